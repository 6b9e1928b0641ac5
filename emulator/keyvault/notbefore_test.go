package keyvault

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// TestNotBeforeRefusesNewProtectedData checks the nbf window as the service
// documents it ("Date-time controlled operations"): before nbf a key does not
// sign, encrypt or wrap (403 Forbidden), but verify, decrypt and unwrapKey
// keep working and the key can be read; from nbf on everything works.
func TestNotBeforeRefusesNewProtectedData(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := newClient(t, s, "")
	cx := ctx(t)
	start := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	s.Clock().Set(start)
	nbf := start.Add(time.Hour)

	created, err := c.CreateKey(cx, "later", azkeys.CreateKeyParameters{
		Kty: ptr(azkeys.KeyTypeRSA), KeySize: ptr(int32(2048)),
		KeyAttributes: &azkeys.KeyAttributes{NotBefore: &nbf},
	}, nil)
	if err != nil {
		t.Fatalf("CreateKey with nbf: %v", err)
	}
	if created.Attributes.NotBefore == nil || !created.Attributes.NotBefore.Equal(nbf) {
		t.Fatalf("created nbf = %v, want %v", created.Attributes.NotBefore, nbf)
	}
	pub := publicKey(t, created.Key).(*rsa.PublicKey)
	digest := digestFor(crypto.SHA256, "not yet")
	oaep := azkeys.EncryptionAlgorithmRSAOAEP256
	ciphertext, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, []byte("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rs256 := azkeys.SignatureAlgorithmRS256

	tests := []struct {
		op      string
		refused bool
		run     func() error
	}{
		{"sign", true, func() error {
			_, err := c.Sign(cx, "later", "", azkeys.SignParameters{Algorithm: &rs256, Value: digest}, nil)
			return err
		}},
		{"encrypt", true, func() error {
			_, err := c.Encrypt(cx, "later", "", azkeys.KeyOperationParameters{Algorithm: &oaep, Value: []byte("secret")}, nil)
			return err
		}},
		{"wrapKey", true, func() error {
			_, err := c.WrapKey(cx, "later", "", azkeys.KeyOperationParameters{Algorithm: &oaep, Value: []byte("0123456789abcdef")}, nil)
			return err
		}},
		{"verify", false, func() error {
			v, err := c.Verify(cx, "later", "", azkeys.VerifyParameters{Algorithm: &rs256, Digest: digest, Signature: make([]byte, 256)}, nil)
			if err == nil && *v.Value {
				t.Error("a zero signature verified")
			}
			return err
		}},
		{"decrypt", false, func() error {
			d, err := c.Decrypt(cx, "later", "", azkeys.KeyOperationParameters{Algorithm: &oaep, Value: ciphertext}, nil)
			if err == nil && string(d.Result) != "secret" {
				t.Errorf("decrypt = %q", d.Result)
			}
			return err
		}},
		{"unwrapKey", false, func() error {
			d, err := c.UnwrapKey(cx, "later", "", azkeys.KeyOperationParameters{Algorithm: &oaep, Value: ciphertext}, nil)
			if err == nil && string(d.Result) != "secret" {
				t.Errorf("unwrapKey = %q", d.Result)
			}
			return err
		}},
		{"get", false, func() error {
			_, err := c.GetKey(cx, "later", "", nil)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run("before nbf/"+tt.op, func(t *testing.T) {
			err := tt.run()
			if tt.refused {
				wantRespErr(t, err, http.StatusForbidden, CodeForbidden)
			} else if err != nil {
				t.Fatalf("%s before nbf: %v", tt.op, err)
			}
		})
	}

	// Still refused shortly before nbf, allowed from nbf on.
	s.Clock().Set(nbf.Add(-30 * time.Second))
	_, err = c.Sign(cx, "later", "", azkeys.SignParameters{Algorithm: &rs256, Value: digest}, nil)
	wantRespErr(t, err, http.StatusForbidden, CodeForbidden)
	s.Clock().Set(nbf)
	for _, tt := range tests {
		t.Run("from nbf/"+tt.op, func(t *testing.T) {
			if err := tt.run(); err != nil {
				t.Fatalf("%s at nbf: %v", tt.op, err)
			}
		})
	}
	sig, err := c.Sign(cx, "later", "", azkeys.SignParameters{Algorithm: &rs256, Value: digest}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, sig.Result); err != nil {
		t.Fatalf("signature made after nbf: %v", err)
	}

	// nbf set later through UpdateKey applies to an existing key, and moving
	// it back into the past lifts the restriction.
	if _, err := c.CreateKey(cx, "updated", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatal(err)
	}
	es256 := func() error {
		_, err := c.Sign(cx, "updated", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: digest}, nil)
		return err
	}
	if err := es256(); err != nil {
		t.Fatalf("sign without nbf: %v", err)
	}
	future := s.Clock().Now().Add(24 * time.Hour).Truncate(time.Second)
	u, err := c.UpdateKey(cx, "updated", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{NotBefore: &future}}, nil)
	if err != nil {
		t.Fatalf("UpdateKey nbf: %v", err)
	}
	if u.Attributes.NotBefore == nil || !u.Attributes.NotBefore.Equal(future) {
		t.Errorf("updated nbf = %v, want %v", u.Attributes.NotBefore, future)
	}
	wantRespErr(t, es256(), http.StatusForbidden, CodeForbidden)
	past := s.Clock().Now().Add(-time.Hour)
	if _, err := c.UpdateKey(cx, "updated", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{NotBefore: &past}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := es256(); err != nil {
		t.Fatalf("sign after nbf moved into the past: %v", err)
	}
}
