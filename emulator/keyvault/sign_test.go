package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"math/big"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// publicKey converts an SDK JWK to a standard library public key.
func publicKey(t *testing.T, k *azkeys.JSONWebKey) crypto.PublicKey {
	t.Helper()
	switch *k.Kty {
	case azkeys.KeyTypeRSA, azkeys.KeyTypeRSAHSM:
		return &rsa.PublicKey{N: new(big.Int).SetBytes(k.N), E: int(new(big.Int).SetBytes(k.E).Int64())}
	default:
		c := map[azkeys.CurveName]elliptic.Curve{azkeys.CurveNameP256: elliptic.P256(), azkeys.CurveNameP384: elliptic.P384(), azkeys.CurveNameP521: elliptic.P521()}[*k.Crv]
		pub, err := ecdsa.ParseUncompressedPublicKey(c, append(append([]byte{4}, k.X...), k.Y...))
		if err != nil {
			t.Fatalf("EC public key: %v", err)
		}
		return pub
	}
}

// digestFor hashes a message with the algorithm's hash, as a client would.
func digestFor(h crypto.Hash, msg string) []byte {
	d := h.New()
	d.Write([]byte(msg))
	return d.Sum(nil)
}

func TestSignEveryAlgorithmVerifiedWithStdlib(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := newClient(t, s, "")
	cx := ctx(t)

	rsaKey, err := c.CreateKey(cx, "rsa", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeRSA), KeySize: ptr(int32(2048))}, nil)
	if err != nil {
		t.Fatalf("create RSA: %v", err)
	}
	if got := len(rsaKey.Key.E); got != 3 || len(rsaKey.Key.N) != 256 {
		t.Errorf("RSA n/e lengths %d/%d", len(rsaKey.Key.N), got)
	}
	ecKeys := map[azkeys.CurveName]azkeys.CreateKeyResponse{}
	for _, crv := range []azkeys.CurveName{azkeys.CurveNameP256, azkeys.CurveNameP384, azkeys.CurveNameP521} {
		k, err := c.CreateKey(cx, "ec-"+strings.ToLower(strings.ReplaceAll(string(crv), "-", "")), azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), Curve: &crv}, nil)
		if err != nil {
			t.Fatalf("create EC %s: %v", crv, err)
		}
		ecKeys[crv] = k
	}

	tests := []struct {
		alg    azkeys.SignatureAlgorithm
		hash   crypto.Hash
		key    azkeys.CreateKeyResponse
		sigLen int // fixed r||s width for ECDSA
	}{
		{azkeys.SignatureAlgorithmRS256, crypto.SHA256, rsaKey, 256},
		{azkeys.SignatureAlgorithmRS384, crypto.SHA384, rsaKey, 256},
		{azkeys.SignatureAlgorithmRS512, crypto.SHA512, rsaKey, 256},
		{azkeys.SignatureAlgorithmPS256, crypto.SHA256, rsaKey, 256},
		{azkeys.SignatureAlgorithmPS384, crypto.SHA384, rsaKey, 256},
		{azkeys.SignatureAlgorithmPS512, crypto.SHA512, rsaKey, 256},
		{azkeys.SignatureAlgorithmES256, crypto.SHA256, ecKeys[azkeys.CurveNameP256], 64},
		{azkeys.SignatureAlgorithmES384, crypto.SHA384, ecKeys[azkeys.CurveNameP384], 96},
		{azkeys.SignatureAlgorithmES512, crypto.SHA512, ecKeys[azkeys.CurveNameP521], 132},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			digest := digestFor(tt.hash, "message for "+string(tt.alg))
			name, version := tt.key.Key.KID.Name(), ""
			if tt.hash == crypto.SHA384 { // exercise the versioned route too
				version = tt.key.Key.KID.Version()
			}
			res, err := c.Sign(cx, name, version, azkeys.SignParameters{Algorithm: &tt.alg, Value: digest}, nil)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if *res.KID != *tt.key.Key.KID {
				t.Errorf("sign kid = %s, want %s", *res.KID, *tt.key.Key.KID)
			}
			if len(res.Result) != tt.sigLen {
				t.Errorf("signature length %d, want %d", len(res.Result), tt.sigLen)
			}
			pub := publicKey(t, tt.key.Key)
			var verr error
			switch p := pub.(type) {
			case *rsa.PublicKey:
				if strings.HasPrefix(string(tt.alg), "PS") {
					verr = rsa.VerifyPSS(p, tt.hash, digest, res.Result, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
				} else {
					verr = rsa.VerifyPKCS1v15(p, tt.hash, digest, res.Result)
				}
			case *ecdsa.PublicKey:
				n := len(res.Result) / 2
				if !ecdsa.Verify(p, digest, new(big.Int).SetBytes(res.Result[:n]), new(big.Int).SetBytes(res.Result[n:])) {
					verr = errBadSig
				}
			}
			if verr != nil {
				t.Fatalf("stdlib verify: %v", verr)
			}
			vr, err := c.Verify(cx, name, version, azkeys.VerifyParameters{Algorithm: &tt.alg, Digest: digest, Signature: res.Result}, nil)
			if err != nil || vr.Value == nil || !*vr.Value {
				t.Fatalf("service Verify = %v, %v", vr.Value, err)
			}
			bad := append([]byte(nil), digest...)
			bad[0] ^= 1
			vr, err = c.Verify(cx, name, version, azkeys.VerifyParameters{Algorithm: &tt.alg, Digest: bad, Signature: res.Result}, nil)
			if err != nil || *vr.Value {
				t.Fatalf("Verify of a wrong digest = %v, %v", *vr.Value, err)
			}
			// The digest length must match the algorithm.
			_, err = c.Sign(cx, name, "", azkeys.SignParameters{Algorithm: &tt.alg, Value: digest[:20]}, nil)
			wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
		})
	}

	t.Run("wrong curve", func(t *testing.T) {
		_, err := c.Sign(cx, "ec-p384", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: digestFor(crypto.SHA256, "x")}, nil)
		wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
	})
	t.Run("encrypt decrypt wrap unwrap", func(t *testing.T) {
		for _, alg := range []azkeys.EncryptionAlgorithm{azkeys.EncryptionAlgorithmRSAOAEP256, azkeys.EncryptionAlgorithmRSAOAEP, azkeys.EncryptionAlgorithmRSA15} {
			enc, err := c.Encrypt(cx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: []byte("secret")}, nil)
			if err != nil {
				t.Fatalf("Encrypt %s: %v", alg, err)
			}
			dec, err := c.Decrypt(cx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: enc.Result}, nil)
			if err != nil || string(dec.Result) != "secret" {
				t.Fatalf("Decrypt %s = %q, %v", alg, dec.Result, err)
			}
		}
		alg := azkeys.EncryptionAlgorithmRSAOAEP256
		w, err := c.WrapKey(cx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: []byte("0123456789abcdef")}, nil)
		if err != nil {
			t.Fatalf("WrapKey: %v", err)
		}
		pub := publicKey(t, rsaKey.Key).(*rsa.PublicKey)
		if len(w.Result) != pub.Size() {
			t.Errorf("wrapped length %d", len(w.Result))
		}
		u, err := c.UnwrapKey(cx, "rsa", "", azkeys.KeyOperationParameters{Algorithm: &alg, Value: w.Result}, nil)
		if err != nil || string(u.Result) != "0123456789abcdef" {
			t.Fatalf("UnwrapKey = %q, %v", u.Result, err)
		}
	})
	t.Run("key_ops enforced", func(t *testing.T) {
		if _, err := c.UpdateKey(cx, "ec-p256", "", azkeys.UpdateKeyParameters{KeyOps: []*azkeys.KeyOperation{ptr(azkeys.KeyOperationVerify)}}, nil); err != nil {
			t.Fatalf("UpdateKey: %v", err)
		}
		_, err := c.Sign(cx, "ec-p256", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: digestFor(crypto.SHA256, "x")}, nil)
		wantRespErr(t, err, http.StatusForbidden, CodeForbidden)
	})
	t.Run("disabled key", func(t *testing.T) {
		if _, err := c.UpdateKey(cx, "ec-p521", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: ptr(false)}}, nil); err != nil {
			t.Fatalf("disable: %v", err)
		}
		_, err := c.Sign(cx, "ec-p521", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES512), Value: digestFor(crypto.SHA512, "x")}, nil)
		re := wantRespErr(t, err, http.StatusForbidden, CodeForbidden)
		if !strings.Contains(re.Error(), CodeKeyDisabled) {
			t.Errorf("403 body lacks KeyDisabled: %v", re)
		}
		// As on the service, a disabled key is still read, and still
		// verifies: only the private key's operations are refused.
		got, err := c.GetKey(cx, "ec-p521", "", nil)
		if err != nil || got.Attributes == nil || got.Attributes.Enabled == nil || *got.Attributes.Enabled {
			t.Errorf("GetKey of a disabled key = %v, %v; want it, disabled", got.Attributes, err)
		}
		if _, err := c.Verify(cx, "ec-p521", "", azkeys.VerifyParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES512), Digest: digestFor(crypto.SHA512, "x"), Signature: make([]byte, 132)}, nil); err != nil {
			t.Errorf("Verify on a disabled key: %v", err)
		}
		// Listing still shows it, disabled.
		pager := c.NewListKeyPropertiesPager(nil)
		found := false
		for pager.More() {
			page, err := pager.NextPage(cx)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range page.Value {
				if it.KID.Name() == "ec-p521" {
					found = !*it.Attributes.Enabled
				}
			}
		}
		if !found {
			t.Error("disabled key not listed as disabled")
		}
	})
	t.Run("digest is signed as sent", func(t *testing.T) {
		res, err := c.Sign(cx, "ec-p384", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES384), Value: digestFor(crypto.SHA384, "abc")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub := publicKey(t, ecKeys[azkeys.CurveNameP384].Key).(*ecdsa.PublicKey)
		n := len(res.Result) / 2
		r, ss := new(big.Int).SetBytes(res.Result[:n]), new(big.Int).SetBytes(res.Result[n:])
		if !ecdsa.Verify(pub, digestFor(crypto.SHA384, "abc"), r, ss) {
			t.Error("signature does not verify over the digest as sent")
		}
	})
}

type sigError string

func (e sigError) Error() string { return string(e) }

const errBadSig = sigError("signature does not verify")
