package azurekv

import (
	"crypto"
	"crypto/rsa"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"

	"github.com/kmskeeper/kmskeeper/engine"
)

// signAlgorithm maps a key type and the engine's signer options to Key
// Vault's algorithm. Key Vault signs a P-256 key with SHA-256 digests only
// and a P-384 key with SHA-384 only; RSA with SHA-256/384/512, PKCS#1 v1.5 or
// PSS with a salt as long as the hash. ok is false for anything else.
func signAlgorithm(t engine.KeyType, opts crypto.SignerOpts) (azkeys.SignatureAlgorithm, bool) {
	_, pss := opts.(*rsa.PSSOptions)
	h := opts.HashFunc()
	switch t {
	case engine.ECP256:
		return azkeys.SignatureAlgorithmES256, h == crypto.SHA256 && !pss
	case engine.ECP384:
		return azkeys.SignatureAlgorithmES384, h == crypto.SHA384 && !pss
	case engine.RSA2048, engine.RSA4096:
		switch {
		case h == crypto.SHA256 && pss:
			return azkeys.SignatureAlgorithmPS256, true
		case h == crypto.SHA384 && pss:
			return azkeys.SignatureAlgorithmPS384, true
		case h == crypto.SHA512 && pss:
			return azkeys.SignatureAlgorithmPS512, true
		case h == crypto.SHA256:
			return azkeys.SignatureAlgorithmRS256, true
		case h == crypto.SHA384:
			return azkeys.SignatureAlgorithmRS384, true
		case h == crypto.SHA512:
			return azkeys.SignatureAlgorithmRS512, true
		}
	}
	return "", false
}

// p1363ToDER converts Key Vault's ECDSA signature, the fixed-width r||s of
// IEEE P1363 (64 bytes for P-256, 96 for P-384), to the ASN.1 DER SEQUENCE
// that x509 and SPIRE expect. A signature of any other length is refused:
// it would come from the wrong curve or a broken answer.
func p1363ToDER(sig []byte, t engine.KeyType) ([]byte, error) {
	var want int
	switch t {
	case engine.ECP256:
		want = 64
	case engine.ECP384:
		want = 96
	default:
		return nil, fmt.Errorf("not an EC key type: %v", t)
	}
	if len(sig) != want {
		return nil, fmt.Errorf("ECDSA signature for %v is %d bytes long; Key Vault returns %d (r||s)", t, len(sig), want)
	}
	r, s := unsignedInt(sig[:want/2]), unsignedInt(sig[want/2:])
	if len(r) == 0 || len(s) == 0 {
		return nil, fmt.Errorf("ECDSA signature for %v has a zero r or s", t)
	}
	// One allocation, sized for the longest SEQUENCE: a short-form length
	// (the content is under 128 bytes for both curves) and, per INTEGER, a
	// tag, a length and a possible leading zero.
	b := cryptobyte.NewBuilder(make([]byte, 0, 2+2*(3+want/2)))
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addUnsignedInt(b, r)
		addUnsignedInt(b, s)
	})
	return b.Bytes()
}

// unsignedInt is the big-endian unsigned integer v without its leading
// zero bytes; empty for zero.
func unsignedInt(v []byte) []byte {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	return v
}

// addUnsignedInt adds the positive integer v (big-endian, no leading zero
// bytes) as a DER INTEGER: a zero byte goes first when the high bit is set,
// so that it does not read as negative. It is what AddASN1BigInt writes,
// without the math/big round trip.
func addUnsignedInt(b *cryptobyte.Builder, v []byte) {
	b.AddASN1(asn1.INTEGER, func(b *cryptobyte.Builder) {
		if v[0]&0x80 != 0 {
			b.AddUint8(0)
		}
		b.AddBytes(v)
	})
}
