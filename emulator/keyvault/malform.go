package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
)

// Malform is a way a Fault damages an answer the vault computed correctly,
// as a broken proxy, a buggy service release or a mix-up of keys would. The
// request takes effect; only what the client reads is wrong.
type Malform string

// Malform modes.
const (
	// MalformJWK damages the public key of key bundles (CreateKey, GetKey,
	// UpdateKey, ...): an EC point off its curve, an RSA key without its
	// exponent.
	MalformJWK Malform = "jwk"
	// MalformKeyID names another key in key bundles (kid of a key with
	// another name) and another version in sign answers.
	MalformKeyID Malform = "kid"
	// MalformSignatureLength drops the last byte of a signature.
	MalformSignatureLength Malform = "signature-length"
	// MalformSignatureKey signs with another key of the same type and
	// algorithm: a well-formed signature that the key does not verify.
	MalformSignatureKey Malform = "signature-other-key"
)

// damage returns the answer out damaged as m says; body is the request.
// Answers m does not apply to are returned unchanged.
func damage(m Malform, out any, body []byte) any {
	switch o := out.(type) {
	case keyBundle:
		switch m {
		case MalformJWK:
			o.Key = damageJWK(o.Key)
		case MalformKeyID:
			o.Key.Kid = otherKeyName(o.Key.Kid)
		}
		return o
	case opResult:
		switch m {
		case MalformKeyID:
			o.Kid = otherVersion(o.Kid)
		case MalformSignatureLength:
			if sig, err := unb64(o.Value); err == nil && len(sig) > 0 {
				o.Value = b64(sig[:len(sig)-1])
			}
		case MalformSignatureKey:
			if sig, ok := signWithOtherKey(body); ok {
				o.Value = b64(sig)
			}
		}
		return o
	}
	return out
}

// damageJWK moves an EC point off its curve (one bit of x) or removes an RSA
// key's exponent.
func damageJWK(j jsonWebKey) jsonWebKey {
	if x, err := unb64(j.X); err == nil && len(x) > 0 {
		x[len(x)-1] ^= 1
		j.X = b64(x)
	}
	if j.N != "" {
		j.E = ""
	}
	return j
}

// otherKeyName renames the key in a kid .../keys/<name>/<version>.
func otherKeyName(kid string) string {
	i := strings.Index(kid, "/keys/")
	if i < 0 {
		return kid + "-other"
	}
	rest := kid[i+len("/keys/"):]
	name, version, _ := strings.Cut(rest, "/")
	return kid[:i] + "/keys/" + name + "-other/" + version
}

// otherVersion replaces the version in a kid .../keys/<name>/<version>.
func otherVersion(kid string) string {
	i := strings.LastIndex(kid, "/")
	if i < 0 {
		return kid
	}
	return kid[:i+1] + newVersionID()
}

// signWithOtherKey signs the request's digest with a fresh key that the
// request's algorithm accepts.
func signWithOtherKey(body []byte) ([]byte, bool) {
	var p opParams
	if json.Unmarshal(body, &p) != nil {
		return nil, false
	}
	digest, err := unb64(p.Value)
	if err != nil {
		return nil, false
	}
	a, ok := signAlgs[p.Alg]
	if !ok {
		return nil, false
	}
	var key crypto.Signer
	if a.rsa {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(a.curve, rand.Reader)
	}
	if err != nil {
		return nil, false
	}
	sig, err := signDigest(key, a, digest)
	return sig, err == nil
}
