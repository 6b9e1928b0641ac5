package keyvault

import (
	"crypto"
	"crypto/rsa"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// TestSignLargeRSAKeys creates RSA-3072 and RSA-4096 keys (the other sizes
// the service offers besides 2048) and signs with every algorithm it allows
// for RSA keys, each signature checked with crypto/rsa.
func TestSignLargeRSAKeys(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := newClient(t, s, "")
	cx := ctx(t)

	algs := []struct {
		alg  azkeys.SignatureAlgorithm
		hash crypto.Hash
		pss  bool
	}{
		{azkeys.SignatureAlgorithmRS256, crypto.SHA256, false},
		{azkeys.SignatureAlgorithmRS384, crypto.SHA384, false},
		{azkeys.SignatureAlgorithmRS512, crypto.SHA512, false},
		{azkeys.SignatureAlgorithmPS256, crypto.SHA256, true},
		{azkeys.SignatureAlgorithmPS384, crypto.SHA384, true},
		{azkeys.SignatureAlgorithmPS512, crypto.SHA512, true},
	}
	for _, bits := range []int{3072, 4096} {
		t.Run(fmt.Sprintf("RSA-%d", bits), func(t *testing.T) {
			t.Parallel() // key generation dominates; run both sizes at once
			name := fmt.Sprintf("rsa-%d", bits)
			k, err := c.CreateKey(cx, name, azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeRSA), KeySize: ptr(int32(bits))}, nil)
			if err != nil {
				t.Fatalf("CreateKey: %v", err)
			}
			pub := publicKey(t, k.Key).(*rsa.PublicKey)
			if pub.N.BitLen() != bits || len(k.Key.N) != bits/8 || pub.E != 65537 {
				t.Fatalf("public key: %d bits, n %d bytes, e %d", pub.N.BitLen(), len(k.Key.N), pub.E)
			}
			got, err := c.GetKey(cx, name, "", nil)
			if err != nil || string(got.Key.N) != string(k.Key.N) {
				t.Fatalf("GetKey: %v", err)
			}
			for _, tt := range algs {
				t.Run(string(tt.alg), func(t *testing.T) {
					digest := digestFor(tt.hash, fmt.Sprintf("%s with RSA-%d", tt.alg, bits))
					res, err := c.Sign(cx, name, k.Key.KID.Version(), azkeys.SignParameters{Algorithm: &tt.alg, Value: digest}, nil)
					if err != nil {
						t.Fatalf("Sign: %v", err)
					}
					if *res.KID != *k.Key.KID {
						t.Errorf("kid %s, want %s", *res.KID, *k.Key.KID)
					}
					if len(res.Result) != bits/8 {
						t.Errorf("signature is %d bytes, want %d", len(res.Result), bits/8)
					}
					if tt.pss {
						err = rsa.VerifyPSS(pub, tt.hash, digest, res.Result, &rsa.PSSOptions{SaltLength: tt.hash.Size(), Hash: tt.hash})
					} else {
						err = rsa.VerifyPKCS1v15(pub, tt.hash, digest, res.Result)
					}
					if err != nil {
						t.Fatalf("crypto/rsa: %v", err)
					}
					vr, err := c.Verify(cx, name, "", azkeys.VerifyParameters{Algorithm: &tt.alg, Digest: digest, Signature: res.Result}, nil)
					if err != nil || !*vr.Value {
						t.Fatalf("service Verify = %v, %v", vr.Value, err)
					}
					// A digest of another hash's length is refused.
					other := digestFor(crypto.SHA256, "x")
					if tt.hash == crypto.SHA256 {
						other = digestFor(crypto.SHA512, "x")
					}
					_, err = c.Sign(cx, name, "", azkeys.SignParameters{Algorithm: &tt.alg, Value: other}, nil)
					wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
				})
			}
			for _, alg := range []azkeys.SignatureAlgorithm{azkeys.SignatureAlgorithmES256, azkeys.SignatureAlgorithmES512} {
				_, err := c.Sign(cx, name, "", azkeys.SignParameters{Algorithm: &alg, Value: digestFor(crypto.SHA256, "x")}, nil)
				re := wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
				if !strings.Contains(re.Error(), string(alg)) {
					t.Errorf("%s on an RSA key: %v", alg, re)
				}
			}
		})
	}
}
