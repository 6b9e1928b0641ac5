package conformance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"   // also registers SHA-224 and SHA-256
	_ "crypto/sha3"   // registers the SHA-3 hashes
	_ "crypto/sha512" // registers SHA-384, SHA-512 and SHA-512/t
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/kmskeeper/kmskeeper/engine"
)

// digest returns h(msg) for a fresh random message.
func digest(h crypto.Hash) ([]byte, error) {
	if !h.Available() {
		return nil, fmt.Errorf("hash %v is not linked into the test binary", h)
	}
	msg := make([]byte, 64)
	rand.Read(msg)
	d := h.New()
	d.Write(msg)
	return d.Sum(nil), nil
}

// verify checks sig over digest with the standard library: ECDSA ASN.1 DER,
// RSA PKCS#1 v1.5, or RSA-PSS with a salt as long as the hash.
func verify(pub crypto.PublicKey, digest, sig []byte, opts crypto.SignerOpts) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(k, pss.Hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: pss.Hash})
		}
		return rsa.VerifyPKCS1v15(k, opts.HashFunc(), digest, sig)
	}
	return fmt.Errorf("unsupported public key %T", pub)
}

// checkPublicKey checks what SPIRE checks of a public key, and the
// fingerprint rule: the ID is the one asked for, the type is the one asked
// for, the PKIX data parses to a key of that type, and the fingerprint is
// hex(SHA-256(PKIX)). It returns the parsed key.
func checkPublicKey(k engine.PublicKey, id string, t engine.KeyType) (crypto.PublicKey, error) {
	if k.ID != id {
		return nil, fmt.Errorf("public key ID = %q, want %q", k.ID, id)
	}
	if k.Type != t {
		return nil, fmt.Errorf("public key %s type = %v, want %v", id, k.Type, t)
	}
	pub, err := x509.ParsePKIXPublicKey(k.PKIX)
	if err != nil {
		return nil, fmt.Errorf("public key %s PKIX data does not parse: %w", id, err)
	}
	if got, err := engine.KeyTypeOf(pub); err != nil || got != t {
		return nil, fmt.Errorf("public key %s is a %v (%v), want %v", id, got, err, t)
	}
	sum := sha256.Sum256(k.PKIX)
	if want := hex.EncodeToString(sum[:]); k.Fingerprint != want {
		return nil, fmt.Errorf("public key %s fingerprint = %q, want hex(sha256(pkix)) = %q", id, k.Fingerprint, want)
	}
	return pub, nil
}
