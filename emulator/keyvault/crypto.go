package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
)

// signAlg describes a JWS signature algorithm as Key Vault implements it:
// the caller sends the digest, which is signed as is (never hashed again).
type signAlg struct {
	hash  crypto.Hash
	rsa   bool
	pss   bool
	curve elliptic.Curve // for ES*
}

var signAlgs = map[string]signAlg{
	"RS256": {hash: crypto.SHA256, rsa: true},
	"RS384": {hash: crypto.SHA384, rsa: true},
	"RS512": {hash: crypto.SHA512, rsa: true},
	"PS256": {hash: crypto.SHA256, rsa: true, pss: true},
	"PS384": {hash: crypto.SHA384, rsa: true, pss: true},
	"PS512": {hash: crypto.SHA512, rsa: true, pss: true},
	"ES256": {hash: crypto.SHA256, curve: elliptic.P256()},
	"ES384": {hash: crypto.SHA384, curve: elliptic.P384()},
	"ES512": {hash: crypto.SHA512, curve: elliptic.P521()},
}

// curves maps JWK curve names to Go curves. P-256K (secp256k1) is not in the
// standard library and is refused explicitly.
var curves = map[string]elliptic.Curve{
	"P-256": elliptic.P256(),
	"P-384": elliptic.P384(),
	"P-521": elliptic.P521(),
}

func curveName(c elliptic.Curve) string { return c.Params().Name }

// checkSign validates alg against the key and the digest length.
func checkSign(alg string, key crypto.Signer, digest []byte) (signAlg, *apiError) {
	a, ok := signAlgs[alg]
	if !ok {
		if alg == "ES256K" {
			return a, badParam("Algorithm ES256K (P-256K) is not supported by this emulator.")
		}
		return a, badParam("Invalid algorithm %q.", alg)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if !a.rsa {
			return a, badParam("Algorithm %s is not valid for an RSA key.", alg)
		}
	case *ecdsa.PrivateKey:
		if a.rsa {
			return a, badParam("Algorithm %s is not valid for an EC key.", alg)
		}
		if k.Curve != a.curve {
			return a, badParam("Algorithm %s is not valid for a key on curve %s.", alg, jwkCurve(k.Curve))
		}
	}
	if len(digest) != a.hash.Size() {
		return a, badParam("Invalid digest length %d for algorithm %s: expected %d bytes.", len(digest), alg, a.hash.Size())
	}
	return a, nil
}

// signDigest signs a precomputed digest. ECDSA signatures are returned as
// fixed-width r||s, like the service (and JWS) does.
func signDigest(key crypto.Signer, a signAlg, digest []byte) ([]byte, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if a.pss {
			return rsa.SignPSS(rand.Reader, k, a.hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.SignPKCS1v15(rand.Reader, k, a.hash, digest)
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			return nil, fmt.Errorf("ecdsa sign: %w", err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	}
	return nil, fmt.Errorf("unsupported key %T", key)
}

// verifyDigest checks a signature over a precomputed digest.
func verifyDigest(pub crypto.PublicKey, a signAlg, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if a.pss {
			return rsa.VerifyPSS(k, a.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(k, a.hash, digest, sig) == nil
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

// rsaCrypt runs encrypt/decrypt/wrapKey/unwrapKey for the RSA algorithms.
func rsaCrypt(key *rsa.PrivateKey, alg string, decrypt bool, in []byte) ([]byte, *apiError) {
	var out []byte
	var err error
	switch alg {
	case "RSA-OAEP", "RSA-OAEP-256":
		h := sha1.New()
		if alg == "RSA-OAEP-256" {
			h = sha256.New()
		}
		if decrypt {
			out, err = rsa.DecryptOAEP(h, rand.Reader, key, in, nil)
		} else {
			out, err = rsa.EncryptOAEP(h, rand.Reader, &key.PublicKey, in, nil)
		}
	case "RSA1_5":
		if decrypt {
			out, err = rsa.DecryptPKCS1v15(rand.Reader, key, in) //nolint:staticcheck // the service still offers RSA1_5
		} else {
			out, err = rsa.EncryptPKCS1v15(rand.Reader, &key.PublicKey, in) //nolint:staticcheck // the service still offers RSA1_5
		}
	default:
		return nil, badParam("Invalid algorithm %q for an RSA key.", alg)
	}
	if err != nil {
		return nil, badParam("Operation failed: %v", err)
	}
	return out, nil
}

// b64 encodes binary fields as the service does: base64url without padding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// unb64 accepts base64url with or without padding (and, leniently, standard
// base64), as the service does on input.
func unb64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64url value: %w", err)
	}
	return b, nil
}

func jwkCurve(c elliptic.Curve) string {
	switch c {
	case elliptic.P256():
		return "P-256"
	case elliptic.P384():
		return "P-384"
	case elliptic.P521():
		return "P-521"
	}
	return curveName(c)
}
