package gcpkms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	emu "github.com/kmskeeper/kmskeeper/emulator/gcpkms"
	"github.com/kmskeeper/kmskeeper/keymanager"
)

// TestBinaryAdoptsBuiltinKeys replaces SPIRE's gcp_kms with the built
// binary on keys laid out as the built-in plugin leaves them: the same
// plugin_data serves them with the same fingerprints, signs with them, and a
// restart after a rotation serves the rotated key.
func TestBinaryAdoptsBuiltinKeys(t *testing.T) {
	srv, raw := startEmulator(t, emu.Options{})
	const id = "builtin-server"
	ca, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwt, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for keyID, k := range map[string]*ecdsa.PrivateKey{"x509-CA-A": ca, "JWT-Signer-A": jwt} {
		if _, err := srv.SeedCryptoKey(emu.SeedKey{
			Name:      testRing + "/cryptoKeys/spire-key-" + id + "-" + keyID,
			Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256,
			Labels:    builtinLabels(id),
			Versions:  []emu.SeedVersion{{State: kmspb.CryptoKeyVersion_DESTROY_SCHEDULED}, {Key: k}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"x509-CA-A": fingerprint(t, &ca.PublicKey), "JWT-Signer-A": fingerprint(t, &jwt.PublicKey)}

	srv.ResetCounts()
	p := configured(t, srv, id, "")
	keys, err := p.GetPublicKeys(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(want) {
		t.Fatalf("served %d keys, want %d", len(keys), len(want))
	}
	for _, k := range keys {
		if k.Fingerprint != want[k.ID] {
			t.Errorf("%s fingerprint = %s, want the built-in plugin's %s", k.ID, k.Fingerprint, want[k.ID])
		}
	}
	if got := srv.Counts(); got["ListCryptoKeys"] != 1 || got["ListCryptoKeyVersions"] != 2 || got["GetPublicKey"] != 2 {
		t.Errorf("start-up calls = %v, want 1 ListCryptoKeys, 2 ListCryptoKeyVersions, 2 GetPublicKey", got)
	}
	if _, fp, err := p.SignData(callCtx(t), "x509-CA-A", digestOf(crypto.SHA256, "adopted"), crypto.SHA256); err != nil || fp != want["x509-CA-A"] {
		t.Fatalf("SignData = %s, %v", fp, err)
	}
	rotated, err := p.GenerateKey(callCtx(t), "x509-CA-A", keymanager.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	key := testRing + "/cryptoKeys/spire-key-" + id + "-x509-CA-A"
	waitFor(t, "the adopted version to be retired", func() bool {
		return versions(t, raw, key)[key+"/cryptoKeyVersions/2"] == kmspb.CryptoKeyVersion_DESTROY_SCHEDULED
	})
	p.Close()

	again := configured(t, srv, id, "")
	got, err := again.GetPublicKey(callCtx(t), "x509-CA-A")
	if err != nil || got.Fingerprint != rotated.Fingerprint {
		t.Errorf("after restart x509-CA-A = %s, %v; want the rotated %s", got.Fingerprint, err, rotated.Fingerprint)
	}
	if lu, ok := parseUnixLabel(getKey(t, raw, key).GetLabels()[labelLastUpdate]); !ok || time.Since(lu) > time.Minute {
		t.Errorf("spire-last-update = %v, want it stamped when the key was brought up to date", lu)
	}
}

// TestBinaryOverTLSWithServiceAccount runs the built binary against the
// emulator over TLS (its CA trusted through SSL_CERT_FILE, as an operator
// would for a TLS-intercepting proxy) with a service account key file and
// permission checks: the real transport and the real auth handshake.
func TestBinaryOverTLSWithServiceAccount(t *testing.T) {
	srv, _ := startEmulator(t, emu.Options{TLS: true, Principals: map[string][]string{pluginAccount: ringPermissions}})
	dir := t.TempDir()
	ca, sa := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sa.json")
	if err := srv.WriteCAFile(ca); err != nil {
		t.Fatal(err)
	}
	if err := srv.WriteServiceAccountFile(pluginAccount, sa); err != nil {
		t.Fatal(err)
	}
	p := launch(t, "SSL_CERT_FILE="+ca)
	data := fmt.Sprintf("key_ring = %q\nendpoint = %q\nservice_account_file = %q\nkey_identifier_value = \"tls-server\"\n", testRing, "https://"+srv.Addr(), sa)
	if err := p.Configure(callCtx(t), testTrustDomain, data); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	pk, err := p.GenerateKey(callCtx(t), "x509-CA-A", keymanager.ECP256)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	// Signing is allowed by the default key policy, not by the key ring.
	if _, fp, err := p.SignData(callCtx(t), "x509-CA-A", digestOf(crypto.SHA256, "tls"), crypto.SHA256); err != nil || fp != pk.Fingerprint {
		t.Fatalf("SignData = %s, %v", fp, err)
	}

	// Plaintext to a TLS endpoint fails with Unavailable, not a hang.
	plain := launch(t)
	short, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	err = plain.Configure(short, testTrustDomain, fmt.Sprintf("key_ring = %q\nendpoint = %q\nservice_account_file = %q\nkey_identifier_value = \"tls-server\"\n", testRing, srv.Addr(), sa))
	if c := status.Code(err); c != codes.Unavailable {
		t.Fatalf("Configure over plaintext against a TLS endpoint = %v, want Unavailable", err)
	}
	t.Logf("plaintext against TLS: %v", err)
}
