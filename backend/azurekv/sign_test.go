package azurekv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	"testing"

	"github.com/kmskeeper/kmskeeper/engine"
)

func TestP1363ToDER(t *testing.T) {
	for _, tt := range []struct {
		t     engine.KeyType
		curve elliptic.Curve
		hash  func([]byte) []byte
	}{
		{engine.ECP256, elliptic.P256(), func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }},
		{engine.ECP384, elliptic.P384(), func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }},
	} {
		key, _ := ecdsa.GenerateKey(tt.curve, rand.Reader)
		size := (tt.curve.Params().BitSize + 7) / 8
		for i := range 50 { // small r and s (leading zeros) appear in some
			digest := tt.hash([]byte{byte(i)})
			r, s, err := ecdsa.Sign(rand.Reader, key, digest)
			if err != nil {
				t.Fatal(err)
			}
			raw := make([]byte, 2*size)
			r.FillBytes(raw[:size])
			s.FillBytes(raw[size:])
			der, err := p1363ToDER(raw, tt.t)
			if err != nil {
				t.Fatalf("%v: %v", tt.t, err)
			}
			if !ecdsa.VerifyASN1(&key.PublicKey, digest, der) {
				t.Fatalf("%v: converted signature does not verify", tt.t)
			}
		}
		for _, n := range []int{0, 2*size - 1, 2*size + 1, 132} {
			if _, err := p1363ToDER(make([]byte, n), tt.t); err == nil {
				t.Errorf("%v: a %d-byte signature was accepted", tt.t, n)
			}
		}
		zero := make([]byte, 2*size)
		big.NewInt(1).FillBytes(zero[:size])
		if _, err := p1363ToDER(zero, tt.t); err == nil {
			t.Errorf("%v: s = 0 accepted", tt.t)
		}
	}
}

func TestSignAlgorithm(t *testing.T) {
	pss := func(h crypto.Hash) crypto.SignerOpts { return &rsa.PSSOptions{Hash: h, SaltLength: h.Size()} }
	for _, tt := range []struct {
		kt   engine.KeyType
		opts crypto.SignerOpts
		want string
	}{
		{engine.ECP256, crypto.SHA256, "ES256"},
		{engine.ECP256, crypto.SHA384, ""},
		{engine.ECP384, crypto.SHA384, "ES384"},
		{engine.ECP384, crypto.SHA256, ""},
		{engine.RSA2048, crypto.SHA256, "RS256"},
		{engine.RSA4096, crypto.SHA512, "RS512"},
		{engine.RSA2048, pss(crypto.SHA384), "PS384"},
		{engine.RSA2048, crypto.SHA224, ""},
		{engine.RSA2048, crypto.SHA3_256, ""},
	} {
		alg, ok := signAlgorithm(tt.kt, tt.opts)
		if got := map[bool]string{true: string(alg), false: ""}[ok]; got != tt.want {
			t.Errorf("signAlgorithm(%v, %v) = %q, want %q", tt.kt, tt.opts.HashFunc(), got, tt.want)
		}
	}
}
