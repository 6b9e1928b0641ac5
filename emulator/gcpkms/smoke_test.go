package gcpkms

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"
)

func TestSmoke(t *testing.T) {
	_, c := startTest(t, Options{})
	ctx := context.Background()
	key, err := c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{
		Parent: testRing, CryptoKeyId: "k1",
		CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN,
			VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256}},
	})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: key.Name + "/cryptoKeyVersions/1"})
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("hello"))
	sig, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: pk.Name, Digest: &kmspb.Digest{Digest: &kmspb.Digest_Sha256{Sha256: d[:]}}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(pk.Pem))
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), d[:], sig.Signature) {
		t.Fatal("bad signature")
	}
}
