package gcpkms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func digestFor(h crypto.Hash, msg []byte) *kmspb.Digest {
	hh := h.New()
	hh.Write(msg)
	d := hh.Sum(nil)
	switch h {
	case crypto.SHA384:
		return &kmspb.Digest{Digest: &kmspb.Digest_Sha384{Sha384: d}}
	case crypto.SHA512:
		return &kmspb.Digest{Digest: &kmspb.Digest_Sha512{Sha512: d}}
	}
	return &kmspb.Digest{Digest: &kmspb.Digest_Sha256{Sha256: d}}
}

// TestAsymmetricSignVerifiesWithStdlib signs with every algorithm family and
// checks each signature with the Go standard library and every integrity
// field of the answers.
func TestAsymmetricSignVerifiesWithStdlib(t *testing.T) {
	_, c := startTest(t, Options{})
	ctx := context.Background()
	msg := []byte("spiffe://example.org CA")
	for _, tc := range []struct {
		alg  kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
		hash crypto.Hash
	}{
		{kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, crypto.SHA256},
		{kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384, crypto.SHA384},
		{kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256, crypto.SHA256},
		{kmspb.CryptoKeyVersion_RSA_SIGN_PSS_2048_SHA256, crypto.SHA256},
		{kmspb.CryptoKeyVersion_RSA_SIGN_PSS_4096_SHA512, crypto.SHA512},
		{kmspb.CryptoKeyVersion_EC_SIGN_ED25519, 0},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			key := createKey(t, c, "k-"+tc.alg.String(), tc.alg, nil)
			name := key.GetName() + "/cryptoKeyVersions/1"
			pk, err := c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			if pk.GetName() != name || pk.GetAlgorithm() != tc.alg || pk.GetProtectionLevel() != kmspb.ProtectionLevel_SOFTWARE {
				t.Fatalf("GetPublicKey = %v", pk)
			}
			pub := parsePublicKey(t, pk)
			req := &kmspb.AsymmetricSignRequest{Name: name}
			var digest []byte
			if tc.hash == 0 {
				req.Data, req.DataCrc32C = msg, wrapperspb.Int64(crc32c(msg))
			} else {
				req.Digest = digestFor(tc.hash, msg)
				_, digest = digestOf(req.Digest)
				req.DigestCrc32C = wrapperspb.Int64(crc32c(digest))
			}
			resp, err := c.AsymmetricSign(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetName() != name || resp.GetSignatureCrc32C().GetValue() != crc32c(resp.GetSignature()) {
				t.Fatalf("AsymmetricSign answer: name %q, crc %d", resp.GetName(), resp.GetSignatureCrc32C().GetValue())
			}
			if tc.hash == 0 && !resp.GetVerifiedDataCrc32C() || tc.hash != 0 && !resp.GetVerifiedDigestCrc32C() {
				t.Fatalf("request CRC not reported as verified: %v", resp)
			}
			sig := resp.GetSignature()
			var ok bool
			switch p := pub.(type) {
			case *ecdsa.PublicKey:
				ok = ecdsa.VerifyASN1(p, digest, sig)
			case *rsa.PublicKey:
				if algorithms[tc.alg].pss {
					ok = rsa.VerifyPSS(p, tc.hash, digest, sig, &rsa.PSSOptions{SaltLength: tc.hash.Size(), Hash: tc.hash}) == nil
				} else {
					ok = rsa.VerifyPKCS1v15(p, tc.hash, digest, sig) == nil
				}
			case ed25519.PublicKey:
				ok = ed25519.Verify(p, msg, sig)
			}
			if !ok {
				t.Fatalf("signature does not verify with %T", pub)
			}
			if tc.hash != 0 { // data is hashed by the service for digest algorithms
				resp, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: name, Data: msg})
				if err != nil {
					t.Fatal(err)
				}
				if e, isEC := pub.(*ecdsa.PublicKey); isEC && !ecdsa.VerifyASN1(e, digest, resp.GetSignature()) {
					t.Fatal("signature over data does not verify")
				}
			}
		})
	}
}

func TestAsymmetricSignRejects(t *testing.T) {
	_, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "ec", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	name := key.GetName() + "/cryptoKeyVersions/1"
	good := digestFor(crypto.SHA256, []byte("x"))
	_, d := digestOf(good)
	for _, tc := range []struct {
		desc string
		req  *kmspb.AsymmetricSignRequest
		code codes.Code
		msg  string
	}{
		{"tampered digest crc", &kmspb.AsymmetricSignRequest{Name: name, Digest: good, DigestCrc32C: wrapperspb.Int64(crc32c(d) ^ 1)}, codes.InvalidArgument, "digest_crc32c did not match"},
		{"tampered data crc", &kmspb.AsymmetricSignRequest{Name: name, Data: []byte("x"), DataCrc32C: wrapperspb.Int64(7)}, codes.InvalidArgument, "data_crc32c did not match"},
		{"wrong digest type", &kmspb.AsymmetricSignRequest{Name: name, Digest: digestFor(crypto.SHA384, []byte("x"))}, codes.InvalidArgument, "does not match the algorithm"},
		{"short digest", &kmspb.AsymmetricSignRequest{Name: name, Digest: &kmspb.Digest{Digest: &kmspb.Digest_Sha256{Sha256: d[:31]}}}, codes.InvalidArgument, "32 bytes"},
		{"digest and data", &kmspb.AsymmetricSignRequest{Name: name, Digest: good, Data: []byte("x")}, codes.InvalidArgument, "Only one"},
		{"neither", &kmspb.AsymmetricSignRequest{Name: name}, codes.InvalidArgument, "must be set"},
		{"missing version", &kmspb.AsymmetricSignRequest{Name: key.GetName() + "/cryptoKeyVersions/9", Digest: good}, codes.NotFound, "CryptoKeyVersion " + key.GetName() + "/cryptoKeyVersions/9 not found."},
		{"bad name", &kmspb.AsymmetricSignRequest{Name: "projects/p/keys/1", Digest: good}, codes.InvalidArgument, "does not match"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := c.AsymmetricSign(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
}

func TestTamperedResponsesAreDetectable(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "ec", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	name := key.GetName() + "/cryptoKeyVersions/1"
	sign := func() *kmspb.AsymmetricSignResponse {
		t.Helper()
		r, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: name, Digest: digestFor(crypto.SHA256, []byte("x"))})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	s.InjectFault(Fault{Method: "AsymmetricSign", Tamper: TamperSignatureCRC, Times: 1})
	if r := sign(); r.GetSignatureCrc32C().GetValue() == crc32c(r.GetSignature()) {
		t.Fatal("tampered signature_crc32c still matches")
	}
	if r := sign(); r.GetSignatureCrc32C().GetValue() != crc32c(r.GetSignature()) {
		t.Fatal("fault with Times 1 applied twice")
	}
	s.InjectFault(Fault{Method: "AsymmetricSign", Tamper: TamperName, Times: 1})
	if r := sign(); r.GetName() == name {
		t.Fatal("tampered name unchanged")
	}
	s.InjectFault(Fault{Method: "GetPublicKey", Tamper: TamperPEMCRC, Times: 1})
	pk, err := c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if pk.GetPemCrc32C().GetValue() == crc32c([]byte(pk.GetPem())) {
		t.Fatal("tampered pem_crc32c still matches")
	}
	pk, err = c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: name, PublicKeyFormat: kmspb.PublicKey_DER})
	if err != nil {
		t.Fatal(err)
	}
	if pk.GetPublicKeyFormat() != kmspb.PublicKey_DER || pk.GetPublicKey().GetCrc32CChecksum().GetValue() != crc32c(pk.GetPublicKey().GetData()) {
		t.Fatalf("DER public key: %v", pk)
	}
}
