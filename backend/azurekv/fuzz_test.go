package azurekv

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/kmskeeper/kmskeeper/engine"
)

// FuzzP1363ToDER feeds the r||s to DER conversion any bytes as a signature
// of an EC or other key type: it never panics, and it returns either an
// error or a DER SEQUENCE of two positive INTEGERs that converts back to
// exactly the input. Plain go test runs the seed corpus (testdata/fuzz and
// the seeds below); go test -fuzz FuzzP1363ToDER explores further.
func FuzzP1363ToDER(f *testing.F) {
	types := []engine.KeyType{engine.ECP256, engine.ECP384, engine.RSA2048, engine.KeyTypeUnspecified}
	for _, tt := range []struct {
		kt    engine.KeyType
		curve elliptic.Curve
		hash  func([]byte) []byte
	}{
		{engine.ECP256, elliptic.P256(), func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }},
		{engine.ECP384, elliptic.P384(), func(b []byte) []byte { h := sha512.Sum384(b); return h[:] }},
	} {
		k, err := ecdsa.GenerateKey(tt.curve, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		size := (tt.curve.Params().BitSize + 7) / 8
		r, s, err := ecdsa.Sign(rand.Reader, k, tt.hash([]byte("seed")))
		if err != nil {
			f.Fatal(err)
		}
		raw := make([]byte, 2*size)
		r.FillBytes(raw[:size])
		s.FillBytes(raw[size:])
		f.Add(raw, uint8(tt.kt))
		// High bits set (DER needs a leading zero), small values (DER drops
		// the leading zeros), zero halves, all ones, wrong lengths.
		high := bytes.Repeat([]byte{0xff}, 2*size)
		f.Add(high, uint8(tt.kt))
		small := make([]byte, 2*size)
		small[size-1], small[2*size-1] = 1, 1
		f.Add(small, uint8(tt.kt))
		f.Add(make([]byte, 2*size), uint8(tt.kt))
		f.Add(raw[:2*size-1], uint8(tt.kt))
		f.Add(append(raw, 0), uint8(tt.kt))
	}
	f.Add([]byte{}, uint8(engine.ECP256))
	f.Add(make([]byte, 64), uint8(engine.RSA2048))
	f.Add(make([]byte, 132), uint8(200))

	f.Fuzz(func(t *testing.T, sig []byte, kt uint8) {
		typ := engine.KeyType(kt)
		if int(kt) < len(types) {
			typ = types[kt]
		}
		der, err := p1363ToDER(sig, typ)
		if err != nil {
			if der != nil {
				t.Fatalf("p1363ToDER returned %x with the error %v", der, err)
			}
			if err.Error() == "" {
				t.Fatal("p1363ToDER returned an empty error")
			}
			return
		}
		var parsed struct{ R, S *big.Int }
		rest, err := asn1.Unmarshal(der, &parsed)
		if err != nil || len(rest) != 0 {
			t.Fatalf("p1363ToDER(%x) = %x, which is not one DER SEQUENCE of two INTEGERs (%v, %d trailing bytes)", sig, der, err, len(rest))
		}
		if parsed.R.Sign() <= 0 || parsed.S.Sign() <= 0 {
			t.Fatalf("p1363ToDER(%x) = %x: r and s must be positive", sig, der)
		}
		// Back to r||s: exactly the input.
		half := len(sig) / 2
		if parsed.R.BitLen() > 8*half || parsed.S.BitLen() > 8*half {
			t.Fatalf("p1363ToDER(%x) = %x: r or s is longer than half the input", sig, der)
		}
		back := make([]byte, 2*half)
		parsed.R.FillBytes(back[:half])
		parsed.S.FillBytes(back[half:])
		if !bytes.Equal(back, sig) {
			t.Fatalf("p1363ToDER(%x) = %x, which converts back to %x", sig, der, back)
		}
		// Re-encoding the parsed values gives the same DER: it is canonical.
		again, err := asn1.Marshal(parsed)
		if err != nil || !bytes.Equal(again, der) {
			t.Fatalf("p1363ToDER(%x) = %x is not canonical DER (re-encoded %x, %v)", sig, der, again, err)
		}
	})
}

// FuzzPublicKey feeds the JWK conversion any key type, curve and
// components, as a damaged or hostile vault answer could hold: it never
// panics, and a key it accepts is one SPIRE can use (its type is a SPIRE key
// type and it survives PKIX encoding and parsing, as SPIRE will do with it).
func FuzzPublicKey(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	x, y := ec.X.FillBytes(make([]byte, 32)), ec.Y.FillBytes(make([]byte, 32))
	f.Add("EC", "P-256", x, y, []byte(nil), []byte(nil))
	f.Add("EC-HSM", "P-384", x, y, []byte(nil), []byte(nil))
	f.Add("RSA", "", []byte(nil), []byte(nil), bytes.Repeat([]byte{0xff}, 256), []byte{1, 0, 1})
	f.Add("RSA-HSM", "", []byte(nil), []byte(nil), bytes.Repeat([]byte{0xc3}, 512), []byte{0})
	f.Add("oct", "P-256K", x, []byte{}, []byte{1}, []byte{1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, kty, crv string, x, y, n, e []byte) {
		jwk := &azkeys.JSONWebKey{X: x, Y: y, N: n, E: e}
		if kty != "" {
			k := azkeys.KeyType(kty)
			jwk.Kty = &k
		}
		if crv != "" {
			c := azkeys.CurveName(crv)
			jwk.Crv = &c
		}
		pub, kt, err := publicKey(jwk)
		if err != nil {
			return
		}
		if got, err := engine.KeyTypeOf(pub); err != nil || got != kt {
			t.Fatalf("accepted a key of type %v (%v), reported as %v", got, err, kt)
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatalf("accepted a key that cannot be PKIX-encoded: %v", err)
		}
		back, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			t.Fatalf("accepted a key whose PKIX encoding does not parse: %v", err)
		}
		if !back.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Fatal("the key changed through PKIX")
		}
	})
}
