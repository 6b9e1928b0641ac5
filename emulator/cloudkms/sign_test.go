package cloudkms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
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

// TestAsymmetricSignVerifiesWithStdlib signs with every algorithm the
// emulator supports, through both the digest and the data field, and checks
// each signature with the Go standard library and every integrity field of
// the answers. RSA-3072 and RSA-4096 material is generated once through the
// API and reused (seeded) for the other algorithms of the same size, since
// 4096-bit generation is slow.
func TestAsymmetricSignVerifiesWithStdlib(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	msg := []byte("spiffe://example.org CA")
	type alg = kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	tests := []struct {
		alg   alg
		hash  crypto.Hash // 0: signs data (Ed25519)
		pss   bool
		bits  int            // RSA modulus size
		curve elliptic.Curve // ECDSA curve
		reuse alg            // seed with the key material of this (earlier) algorithm's key
	}{
		{alg: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, hash: crypto.SHA256, curve: elliptic.P256()},
		{alg: kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384, hash: crypto.SHA384, curve: elliptic.P384()},
		{alg: kmspb.CryptoKeyVersion_EC_SIGN_ED25519},
		{alg: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256, hash: crypto.SHA256, bits: 2048},
		{alg: kmspb.CryptoKeyVersion_RSA_SIGN_PSS_2048_SHA256, hash: crypto.SHA256, pss: true, bits: 2048},
		{alg: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_3072_SHA256, hash: crypto.SHA256, bits: 3072},
		{alg: kmspb.CryptoKeyVersion_RSA_SIGN_PSS_3072_SHA256, hash: crypto.SHA256, pss: true, bits: 3072, reuse: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_3072_SHA256},
		{alg: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256, hash: crypto.SHA256, bits: 4096},
		{alg: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA512, hash: crypto.SHA512, bits: 4096, reuse: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256},
		{alg: kmspb.CryptoKeyVersion_RSA_SIGN_PSS_4096_SHA256, hash: crypto.SHA256, pss: true, bits: 4096, reuse: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256},
		{alg: kmspb.CryptoKeyVersion_RSA_SIGN_PSS_4096_SHA512, hash: crypto.SHA512, pss: true, bits: 4096, reuse: kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256},
	}
	// Every algorithm the emulator implements is in the table.
	covered := map[alg]bool{}
	for _, tc := range tests {
		covered[tc.alg] = true
	}
	for a := range algorithms {
		if !covered[a] {
			t.Errorf("algorithm %v is supported but not tested here", a)
		}
	}

	versions := map[alg]string{}
	for _, tc := range tests {
		t.Run(tc.alg.String(), func(t *testing.T) {
			keyName := testRing + "/cryptoKeys/k-" + tc.alg.String()
			if tc.reuse == 0 {
				createKey(t, c, "k-"+tc.alg.String(), tc.alg, nil)
			} else {
				if _, err := s.SeedCryptoKey(SeedKey{Name: keyName, Algorithm: tc.alg,
					Versions: []SeedVersion{{Key: signerOf(t, s, versions[tc.reuse])}}}); err != nil {
					t.Fatal(err)
				}
			}
			name := keyName + "/cryptoKeyVersions/1"
			versions[tc.alg] = name
			pk, err := c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			if pk.GetName() != name || pk.GetAlgorithm() != tc.alg || pk.GetProtectionLevel() != kmspb.ProtectionLevel_SOFTWARE {
				t.Fatalf("GetPublicKey = %v", pk)
			}
			pub := parsePublicKey(t, pk)
			switch p := pub.(type) {
			case *rsa.PublicKey:
				if tc.bits == 0 || p.N.BitLen() != tc.bits || p.E != 65537 {
					t.Fatalf("RSA key of %d bits, e %d; want %d bits", p.N.BitLen(), p.E, tc.bits)
				}
			case *ecdsa.PublicKey:
				if tc.curve == nil || p.Curve != tc.curve {
					t.Fatalf("EC key on %v, want %v", p.Curve.Params().Name, tc.curve)
				}
			case ed25519.PublicKey:
				if tc.hash != 0 {
					t.Fatal("Ed25519 key for a digest algorithm")
				}
			}
			verify := func(signed, sig []byte) bool {
				switch p := pub.(type) {
				case *ecdsa.PublicKey:
					return ecdsa.VerifyASN1(p, signed, sig)
				case *rsa.PublicKey:
					if len(sig) != tc.bits/8 {
						return false
					}
					if tc.pss {
						return rsa.VerifyPSS(p, tc.hash, signed, sig, &rsa.PSSOptions{SaltLength: tc.hash.Size(), Hash: tc.hash}) == nil
					}
					return rsa.VerifyPKCS1v15(p, tc.hash, signed, sig) == nil
				case ed25519.PublicKey:
					return ed25519.Verify(p, signed, sig)
				}
				return false
			}
			// What the signature covers: the digest of msg, or msg itself.
			signed := msg
			var digestReq *kmspb.Digest
			if tc.hash != 0 {
				digestReq = digestFor(tc.hash, msg)
				_, signed = digestOf(digestReq)
			}

			for _, viaData := range []bool{false, true} {
				if !viaData && tc.hash == 0 {
					continue // Ed25519 signs data only (checked below)
				}
				field := "digest"
				req := &kmspb.AsymmetricSignRequest{Name: name}
				if viaData {
					field = "data"
					req.Data, req.DataCrc32C = msg, wrapperspb.Int64(crc32c(msg))
				} else {
					req.Digest, req.DigestCrc32C = digestReq, wrapperspb.Int64(crc32c(signed))
				}
				resp, err := c.AsymmetricSign(ctx, req)
				if err != nil {
					t.Fatalf("sign %s: %v", field, err)
				}
				if resp.GetName() != name || resp.GetSignatureCrc32C().GetValue() != crc32c(resp.GetSignature()) || resp.GetProtectionLevel() != kmspb.ProtectionLevel_SOFTWARE {
					t.Fatalf("sign %s answer: name %q, crc %d, protection %v", field, resp.GetName(), resp.GetSignatureCrc32C().GetValue(), resp.GetProtectionLevel())
				}
				if resp.GetVerifiedDataCrc32C() != viaData || resp.GetVerifiedDigestCrc32C() == viaData {
					t.Fatalf("sign %s: verified_data_crc32c %v, verified_digest_crc32c %v", field, resp.GetVerifiedDataCrc32C(), resp.GetVerifiedDigestCrc32C())
				}
				if !verify(signed, resp.GetSignature()) {
					t.Fatalf("signature over %s does not verify with %T", field, pub)
				}
			}

			// A digest of another type is refused; Ed25519 takes no digest.
			wrong := digestFor(crypto.SHA384, msg)
			if tc.hash == crypto.SHA384 {
				wrong = digestFor(crypto.SHA256, msg)
			}
			_, err = c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: name, Digest: wrong})
			wantCode(t, err, codes.InvalidArgument, "")
		})
	}
}

// signerOf returns the key material of a version, for seeding other keys
// with it.
func signerOf(t *testing.T, s *Server, version string) crypto.Signer {
	t.Helper()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	_, v, err := s.lookupVersionLocked(version)
	if err != nil || v.signer == nil {
		t.Fatalf("key material of %q: %v", version, err)
	}
	return v.signer
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
