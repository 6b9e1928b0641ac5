package gcpkms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestBinaryAdoptsBuiltinKeys replaces SPIRE's gcp_kms with the built
// binary on keys laid out as the built-in plugin leaves them: the same
// plugin_data serves them with the same fingerprints, signs with them, and a
// restart after a rotation serves the rotated key, stamped on the cloud's
// clock. (The superseded version is retired once it has settled, the settle
// period after the key's last write: TestGenerateSignRotate covers that on a
// moved clock.)
func TestBinaryAdoptsBuiltinKeys(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	const id = "builtin-server"
	ca, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwt, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for keyID, k := range map[string]*ecdsa.PrivateKey{"x509-CA-A": ca, "JWT-Signer-A": jwt} {
		if _, err := srv.SeedCryptoKey(cloudkms.SeedKey{
			Name:      testRing + "/cryptoKeys/spire-key-" + id + "-" + keyID,
			Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256,
			Labels:    builtinLabels(id),
			Versions:  []cloudkms.SeedVersion{{State: kmspb.CryptoKeyVersion_DESTROY_SCHEDULED}, {Key: k}},
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
	rotated, err := p.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	key := testRing + "/cryptoKeys/spire-key-" + id + "-x509-CA-A"
	adopted := key + "/cryptoKeyVersions/2"
	if st := versions(t, raw, key)[adopted]; st != kmspb.CryptoKeyVersion_ENABLED {
		t.Errorf("the adopted version is %v right after the rotation, want ENABLED until it has settled", st)
	}
	p.Close()

	// The cloud's clock moves on; the host's does not. The restarted
	// binary learns the cloud's time from the emulator's Date headers and
	// stamps the key it adopts with it, not with its own clock.
	srv.Clock().Advance(time.Hour)
	again := configured(t, srv, id, "")
	got, err := again.GetPublicKey(callCtx(t), "x509-CA-A")
	if err != nil || got.Fingerprint != rotated.Fingerprint {
		t.Errorf("after restart x509-CA-A = %s, %v; want the rotated %s", got.Fingerprint, err, rotated.Fingerprint)
	}
	lu, ok := parseUnixLabel(getKey(t, raw, key).GetLabels()[labelLastUpdate])
	if d := srv.Clock().Now().Sub(lu); !ok || d < -time.Minute || d > time.Minute {
		t.Errorf("spire-last-update = %v, want the cloud's time %v (stamped when the restarted binary adopted the key)", lu, srv.Clock().Now())
	}
}

// TestBinaryOverTLSWithServiceAccount runs the built binary against the
// emulator over TLS (its CA trusted through SSL_CERT_FILE, as an operator
// would for a TLS-intercepting proxy) with a service account key file and
// permission checks: the real transport and the real auth handshake.
func TestBinaryOverTLSWithServiceAccount(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{TLS: true, Principals: map[string][]string{pluginAccount: ringPermissions}})
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
	pk, err := p.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256)
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

// TestBinaryValidatesServerID asks the built binary's Validate, as SPIRE
// does before Configure, about server IDs Cloud KMS cannot hold: Validate
// answers invalid with the very text Configure then fails with (naming
// key_identifier_value and what would fit), instead of answering valid for a
// configuration that cannot start. An identifier file is checked once it
// exists (its UUID fits); a missing one is left to Configure to create.
func TestBinaryValidatesServerID(t *testing.T) {
	p := launch(t)
	ring := fmt.Sprintf("key_ring = %q\nendpoint = \"127.0.0.1:1\"\n", testRing)
	dir := t.TempDir()
	idFile := filepath.Join(dir, "server-id")
	if err := os.WriteFile(idFile, []byte(uuid.NewString()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing-id")
	tests := []struct {
		name     string
		data     string
		wantNote []string // all in one note of an invalid answer; nil: valid
	}{
		{"uppercase and dot", ring + `key_identifier_value = "Server.A"`, []string{`key_identifier_value "Server.A" cannot be used with gcp_kms`, "lowercase letters", `for example "server-a"`}},
		{"50 characters", ring + `key_identifier_value = "` + strings.Repeat("s", 50) + `"`, []string{"key_identifier_value", "at most 40 characters", "this one has 50"}},
		{"in migrate_from", ring + "key_identifier_value = \"server-a\"\nmigrate_from {\n" + ring + "key_identifier_value = \"Old\"\n}", []string{`migrate_from: key_identifier_value "Old"`}},
		{"40 characters", ring + `key_identifier_value = "` + strings.Repeat("s", 40) + `"`, nil},
		{"identifier file", ring + fmt.Sprintf("key_identifier_file = %q", idFile), nil},
		{"missing identifier file", ring + fmt.Sprintf("key_identifier_file = %q", missing), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			valid, notes, err := p.Validate(callCtx(t), testTrustDomain, tt.data)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if tt.wantNote == nil {
				if !valid {
					t.Errorf("Validate = invalid (%q), want valid", notes)
				}
				return
			}
			if valid || len(notes) != 1 {
				t.Fatalf("Validate = valid %v, notes %q; want invalid with one note", valid, notes)
			}
			for _, w := range tt.wantNote {
				if !strings.Contains(notes[0], w) {
					t.Errorf("Validate note %q does not say %q", notes[0], w)
				}
			}
			// Configure refuses with the same text, before any network call.
			err = p.Configure(callCtx(t), testTrustDomain, tt.data)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), notes[0]) {
				t.Errorf("Configure = %v, want InvalidArgument containing Validate's note %q", err, notes[0])
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("Validate created %s (%v)", missing, err)
	}
}
