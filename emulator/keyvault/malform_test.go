package keyvault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"math/big"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func TestMalformedAnswers(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := newClient(t, s, "")
	cx := ctx(t)
	created, err := c.CreateKey(cx, "k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), Curve: ptr(azkeys.CurveNameP256)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(created.Key.X), Y: new(big.Int).SetBytes(created.Key.Y)}
	version := created.Key.KID.Version()
	digest := sha256.Sum256([]byte("malformed"))
	sign := func(t *testing.T) azkeys.SignResponse {
		t.Helper()
		resp, err := c.Sign(cx, "k", version, azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: digest[:]}, nil)
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		return resp
	}
	verifies := func(sig []byte) bool {
		if len(sig) != 64 {
			return false
		}
		return ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:]))
	}
	if !verifies(sign(t).Result) {
		t.Fatal("an undamaged signature does not verify")
	}

	tests := []struct {
		m     Malform
		op    string
		check func(t *testing.T)
	}{
		{MalformJWK, "GetKey", func(t *testing.T) {
			got, err := c.GetKey(cx, "k", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if elliptic.P256().IsOnCurve(new(big.Int).SetBytes(got.Key.X), new(big.Int).SetBytes(got.Key.Y)) {
				t.Error("the damaged JWK is still a point of P-256")
			}
		}},
		{MalformKeyID, "GetKey", func(t *testing.T) {
			got, err := c.GetKey(cx, "k", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if name := got.Key.KID.Name(); name == "k" || !strings.HasPrefix(name, "k") {
				t.Errorf("kid names key %q, want another key", name)
			}
		}},
		{MalformKeyID, "Sign", func(t *testing.T) {
			if got := sign(t).KID.Version(); got == version || got == "" {
				t.Errorf("the signature names version %q, want another than %q", got, version)
			}
		}},
		{MalformSignatureLength, "Sign", func(t *testing.T) {
			if n := len(sign(t).Result); n != 63 {
				t.Errorf("signature of %d bytes, want 63", n)
			}
		}},
		{MalformSignatureKey, "Sign", func(t *testing.T) {
			sig := sign(t).Result
			if len(sig) != 64 || verifies(sig) {
				t.Errorf("the other key's signature (%d bytes) verifies = %v, want 64 bytes that do not", len(sig), verifies(sig))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.m)+"/"+tt.op, func(t *testing.T) {
			s.InjectFault(Fault{Op: tt.op, Malform: tt.m, Count: 1})
			tt.check(t)
			if f := s.Faults(); len(f) != 0 {
				t.Errorf("fault not consumed: %+v", f)
			}
			// The next answer is intact again.
			if !verifies(sign(t).Result) {
				t.Error("a signature after the fault does not verify")
			}
		})
	}
}
