package gcpkms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// builtinLabels are the labels SPIRE's gcp_kms writes on a key before its
// first liveness pass (no spire-last-update).
func builtinLabels(serverID string) map[string]string {
	return map[string]string{labelTrustDomain: trustDomainLabel(testTrustDomain), labelServerID: serverID, labelActive: "true"}
}

func fingerprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Fingerprint(der)
}

// TestAdoptBuiltinKeys lays out keys exactly as SPIRE's gcp_kms leaves them
// (one CryptoKey per key ID, older versions scheduled for destruction, a
// crash leftover with two enabled versions) and checks that they are served
// with the same fingerprints, sign, and that the leftover is retired.
func TestAdoptBuiltinKeys(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	now := srv.Clock().Now()
	ec1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec3, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ec4, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	const id = "0b1e5a3c-7d2f-4c1e-9a8b-3f6e2d1c0b9a" // a key_identifier_file UUID
	name := func(keyID string) string { return testRing + "/cryptoKeys/spire-key-" + id + "-" + keyID }
	seeds := []cloudkms.SeedKey{
		{
			Name: name("x509-CA-A"), Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, Labels: builtinLabels(id),
			CreateTime: now.Add(-72 * time.Hour),
			Versions: []cloudkms.SeedVersion{
				{State: kmspb.CryptoKeyVersion_DESTROY_SCHEDULED, CreateTime: now.Add(-72 * time.Hour), Key: ec1},
				{CreateTime: now.Add(-24 * time.Hour), Key: ec2},
			},
		},
		{
			// A crash between creating version 2 and destroying version 1.
			Name: name("x509-CA-B"), Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384, Labels: builtinLabels(id),
			CreateTime: now.Add(-48 * time.Hour),
			Versions: []cloudkms.SeedVersion{
				{CreateTime: now.Add(-48 * time.Hour), Key: ec3},
				{CreateTime: now.Add(-time.Hour), Key: ec4},
			},
		},
		{
			Name: name("JWT-Signer-A"), Algorithm: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256, Labels: builtinLabels(id),
			CreateTime: now.Add(-24 * time.Hour),
			Versions:   []cloudkms.SeedVersion{{CreateTime: now.Add(-24 * time.Hour), Key: rsaKey}},
		},
	}
	for _, s := range seeds {
		if _, err := srv.SeedCryptoKey(s); err != nil {
			t.Fatal(err)
		}
	}

	m := newManager(t, srv, newBackend(t, srv, id), id, nil)
	for keyID, pub := range map[string]crypto.PublicKey{"x509-CA-A": &ec2.PublicKey, "x509-CA-B": &ec4.PublicKey, "JWT-Signer-A": &rsaKey.PublicKey} {
		got, err := m.GetPublicKey(callCtx(t), keyID)
		if err != nil {
			t.Fatalf("GetPublicKey(%s): %v", keyID, err)
		}
		if want := fingerprint(t, pub); got.Fingerprint != want {
			t.Errorf("%s fingerprint = %s, want the built-in plugin's %s", keyID, got.Fingerprint, want)
		}
	}
	for keyID, h := range map[string]crypto.Hash{"x509-CA-A": crypto.SHA256, "x509-CA-B": crypto.SHA384, "JWT-Signer-A": crypto.SHA256} {
		if _, _, err := m.SignData(callCtx(t), keyID, digestOf(h, "adopted"), h); err != nil {
			t.Errorf("SignData(%s): %v", keyID, err)
		}
	}

	m.Start()
	waitFor(t, "the crash leftover (older enabled version) to be destroyed", func() bool {
		runTasks(t, srv, m)
		return versions(t, raw, name("x509-CA-B"))[name("x509-CA-B")+"/cryptoKeyVersions/1"] == kmspb.CryptoKeyVersion_DESTROY_SCHEDULED
	})
	if st := versions(t, raw, name("x509-CA-B"))[name("x509-CA-B")+"/cryptoKeyVersions/2"]; st != kmspb.CryptoKeyVersion_ENABLED {
		t.Errorf("the newest version is %v, want ENABLED", st)
	}

	// Rotating an adopted key adds a version to the same CryptoKey.
	pk, err := m.GenerateKey(callCtx(t), "JWT-Signer-A", engine.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if pk.Fingerprint == fingerprint(t, &rsaKey.PublicKey) {
		t.Error("rotation kept the adopted fingerprint")
	}
	if vs := versions(t, raw, name("JWT-Signer-A")); vs[name("JWT-Signer-A")+"/cryptoKeyVersions/2"] != kmspb.CryptoKeyVersion_ENABLED {
		t.Errorf("rotation of an adopted key: versions %v, want version 2 ENABLED", vs)
	}
}

// TestInactiveKeyRecovery checks that a key that cleanup marked inactive
// (spire-active=false, every version destroyed), or that lost its labels, is
// brought back into use by GenerateKey instead of failing with AlreadyExists
// as the built-in plugin does.
func TestInactiveKeyRecovery(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	inactive := builtinLabels("server-a")
	inactive[labelActive] = "false"
	inactive[labelLastUpdate] = "1700000000"
	inactive["team"] = "platform"
	keys := []cloudkms.SeedKey{
		{
			Name: testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A", Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, Labels: inactive,
			Versions: []cloudkms.SeedVersion{{State: kmspb.CryptoKeyVersion_DESTROYED}, {State: kmspb.CryptoKeyVersion_DESTROY_SCHEDULED}},
		},
		// No labels at all, and another algorithm than the one asked for.
		{Name: testRing + "/cryptoKeys/spire-key-server-a-JWT-Signer-A", Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256},
	}
	for _, k := range keys {
		if _, err := srv.SeedCryptoKey(k); err != nil {
			t.Fatal(err)
		}
	}
	m := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	if keys, _ := m.GetPublicKeys(callCtx(t)); len(keys) != 0 {
		t.Fatalf("an inactive key was served: %v", keys)
	}
	for _, k := range []struct {
		id string
		t  engine.KeyType
	}{{"x509-CA-A", engine.ECP256}, {"JWT-Signer-A", engine.RSA2048}} {
		if _, err := m.GenerateKey(callCtx(t), k.id, k.t); err != nil {
			t.Fatalf("GenerateKey(%s) on an existing key: %v", k.id, err)
		}
		key := getKey(t, raw, testRing+"/cryptoKeys/spire-key-server-a-"+k.id)
		labels := key.GetLabels()
		if labels[labelActive] != "true" || labels[labelServerID] != "server-a" || labels[labelTrustDomain] != trustDomainLabel(testTrustDomain) {
			t.Errorf("%s labels = %v, want them fixed", k.id, labels)
		}
		if ts, ok := parseUnixLabel(labels[labelLastUpdate]); !ok || ts.Unix() == 1700000000 {
			t.Errorf("%s spire-last-update = %q, want it stamped", k.id, labels[labelLastUpdate])
		}
		if k.id == "x509-CA-A" && labels["team"] != "platform" {
			t.Errorf("labels set by others were dropped: %v", labels)
		}
		if want, _ := algorithmFor(k.t, SchemePKCS1); key.GetVersionTemplate().GetAlgorithm() != want {
			t.Errorf("%s template algorithm = %v, want %v", k.id, key.GetVersionTemplate().GetAlgorithm(), want)
		}
	}
	// A restart serves the recovered keys.
	restarted := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	if keys, _ := restarted.GetPublicKeys(callCtx(t)); len(keys) != 2 {
		t.Errorf("after restart %d keys served, want 2", len(keys))
	}
}

// TestAdoptSHA512Key checks a CryptoKey made elsewhere with
// RSA_SIGN_PKCS1_4096_SHA512: it is served, signs SHA-512 digests (verified
// with the standard library), refuses SHA-256 requests with InvalidArgument
// naming its algorithm, and its rotation makes a SHA-256 version (what SPIRE
// signs with), fixing the key's template.
func TestAdoptSHA512Key(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	now := srv.Clock().Now()
	k, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		t.Fatal(err)
	}
	name := testRing + "/cryptoKeys/spire-key-server-a-JWT-Signer-A"
	if _, err := srv.SeedCryptoKey(cloudkms.SeedKey{
		Name: name, Algorithm: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA512, Labels: builtinLabels("server-a"),
		CreateTime: now.Add(-time.Hour),
		Versions:   []cloudkms.SeedVersion{{CreateTime: now.Add(-time.Hour), Key: k}},
	}); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	pk, err := m.GetPublicKey(callCtx(t), "JWT-Signer-A")
	if err != nil || pk.Type != engine.RSA4096 || pk.Fingerprint != fingerprint(t, &k.PublicKey) {
		t.Fatalf("GetPublicKey = %+v, %v; want the adopted RSA 4096 key", pk, err)
	}
	digest := digestOf(crypto.SHA512, "adopted")
	sig, _, err := m.SignData(callCtx(t), "JWT-Signer-A", digest, crypto.SHA512)
	if err != nil {
		t.Fatalf("SignData(SHA-512): %v", err)
	}
	if err := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA512, digest, sig); err != nil {
		t.Fatalf("the signature does not verify: %v", err)
	}
	_, _, err = m.SignData(callCtx(t), "JWT-Signer-A", digestOf(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.InvalidArgument, "RSA_SIGN_PKCS1_4096_SHA512")

	if _, err := m.GenerateKey(callCtx(t), "JWT-Signer-A", engine.RSA4096); err != nil {
		t.Fatal(err)
	}
	if alg := getKey(t, raw, name).GetVersionTemplate().GetAlgorithm(); alg != kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256 {
		t.Errorf("template after rotation = %v, want RSA_SIGN_PKCS1_4096_SHA256", alg)
	}
	if _, _, err := m.SignData(callCtx(t), "JWT-Signer-A", digestOf(crypto.SHA256, "x"), crypto.SHA256); err != nil {
		t.Errorf("SignData(SHA-256) after rotation: %v", err)
	}
}
