package gcpkms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// FuzzParsePublicKey feeds the GetPublicKey decoding any algorithm and PEM
// text, as a damaged or hostile answer could hold: it never panics, and a
// key it accepts has the SPIRE key type of its algorithm and survives PKIX
// encoding and parsing, as SPIRE will do with it.
func FuzzParsePublicKey(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	good := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	f.Add(int32(kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256), good)
	f.Add(int32(kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384), good)
	f.Add(int32(kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256), good)
	f.Add(int32(kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
	f.Add(int32(0), "")
	f.Fuzz(func(t *testing.T, alg int32, text string) {
		resp := &kmspb.PublicKey{Algorithm: kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm(alg), Pem: text}
		pub, a, err := parsePublicKey("projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1", resp)
		if err != nil {
			return
		}
		if got, err := keymanager.KeyTypeOf(pub); err != nil || got != a.keyType {
			t.Fatalf("accepted a key of type %v (%v) for algorithm %v", got, err, a.kms)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatalf("accepted a key that cannot be PKIX-encoded: %v", err)
		}
		back, err := x509.ParsePKIXPublicKey(der)
		if err != nil || !back.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Fatalf("the key does not survive PKIX: %v", err)
		}
	})
}

// FuzzLeaseLabel feeds the lease label parsing any value, as another tool
// or a damaged label could leave: it never panics, and a value it accepts
// is the one value formatLease writes for that lease, so that every lease
// label has exactly one reading and survives a rewrite unchanged.
func FuzzLeaseLabel(f *testing.F) {
	for _, v := range []string{"3-1800000000123", "12-1800000000123-p", "0-1", "03-5", "3--5", "x-y", "3-5-q", "", "-p"} {
		f.Add(v)
	}
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	f.Fuzz(func(t *testing.T, v string) {
		l, ok := parseLease(key, "h", v)
		if !ok {
			return
		}
		if l.Renewed.UnixMilli() <= 0 || !isVersionName(l.Ref) {
			t.Fatalf("accepted %q as %+v", v, l)
		}
		if back := formatLease(versionNumber(l.Ref), l); back != v {
			t.Fatalf("accepted %q, which writes back as %q", v, back)
		}
	})
}
