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
