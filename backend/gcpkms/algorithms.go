package gcpkms

import (
	"crypto"
	"crypto/rsa"
	"fmt"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Scheme is the RSA signature scheme of new RSA keys. A Cloud KMS key fixes
// its padding and hash at creation, so the choice is made once per key.
type Scheme string

// The RSA signature schemes rsa_signature_scheme accepts.
const (
	SchemePKCS1 Scheme = "pkcs1"
	SchemePSS   Scheme = "pss"
)

// algorithm is what a Cloud KMS signing algorithm means to SPIRE.
type algorithm struct {
	kms     kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	keyType engine.KeyType
	hash    crypto.Hash
	pss     bool
}

// algorithms lists the Cloud KMS algorithms a SPIRE key can have: the ones
// kmskeeper creates and the ones it adopts (a key created elsewhere with
// SHA-512).
var algorithms = []algorithm{
	{kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, engine.ECP256, crypto.SHA256, false},
	{kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384, engine.ECP384, crypto.SHA384, false},
	{kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256, engine.RSA2048, crypto.SHA256, false},
	{kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256, engine.RSA4096, crypto.SHA256, false},
	{kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA512, engine.RSA4096, crypto.SHA512, false},
	{kmspb.CryptoKeyVersion_RSA_SIGN_PSS_2048_SHA256, engine.RSA2048, crypto.SHA256, true},
	{kmspb.CryptoKeyVersion_RSA_SIGN_PSS_4096_SHA256, engine.RSA4096, crypto.SHA256, true},
	{kmspb.CryptoKeyVersion_RSA_SIGN_PSS_4096_SHA512, engine.RSA4096, crypto.SHA512, true},
}

// lookupAlgorithm returns what a Cloud KMS algorithm means to SPIRE.
func lookupAlgorithm(a kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm) (algorithm, bool) {
	for _, x := range algorithms {
		if x.kms == a {
			return x, true
		}
	}
	return algorithm{}, false
}

// lookupAlgorithmName is lookupAlgorithm by name (Generation.Algorithm).
func lookupAlgorithmName(name string) (algorithm, bool) {
	v, ok := kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm_value[name]
	if !ok {
		return algorithm{}, false
	}
	return lookupAlgorithm(kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm(v))
}

// algorithmFor returns the algorithm of a new key: SHA-256 for every RSA
// size, as the built-in plugin creates them and as SPIRE signs with them, and
// the configured padding.
func algorithmFor(t engine.KeyType, s Scheme) (kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm, error) {
	pss := s == SchemePSS
	switch t {
	case engine.ECP256:
		return kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil
	case engine.ECP384:
		return kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384, nil
	case engine.RSA2048:
		if pss {
			return kmspb.CryptoKeyVersion_RSA_SIGN_PSS_2048_SHA256, nil
		}
		return kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256, nil
	case engine.RSA4096:
		if pss {
			return kmspb.CryptoKeyVersion_RSA_SIGN_PSS_4096_SHA256, nil
		}
		return kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256, nil
	}
	return 0, engine.Errorf(codes.InvalidArgument, "Cloud KMS has no signing algorithm for key type %v", t)
}

// describe says in words what the algorithm signs.
func (a algorithm) describe() string {
	switch {
	case a.keyType.IsEC():
		return "ECDSA with " + a.hash.String()
	case a.pss:
		return "RSA-PSS with " + a.hash.String()
	default:
		return "RSA PKCS#1 v1.5 with " + a.hash.String()
	}
}

// accepts checks a signing request (a crypto.Hash or *rsa.PSSOptions, as
// the engine normalizes them) against the one algorithm the key signs with.
func (a algorithm) accepts(opts crypto.SignerOpts) error {
	_, pss := opts.(*rsa.PSSOptions)
	if opts.HashFunc() == a.hash && pss == a.pss {
		return nil
	}
	asked := "PKCS#1 v1.5 with " + opts.HashFunc().String()
	switch {
	case a.keyType.IsEC():
		asked = "ECDSA with " + opts.HashFunc().String()
	case pss:
		asked = "RSA-PSS with " + opts.HashFunc().String()
	}
	return fmt.Errorf("the key's algorithm is %s, which signs only %s, and the request asks for %s (a Cloud KMS key fixes its hash and padding when it is created; rsa_signature_scheme chooses the padding of new RSA keys)",
		a.kms, a.describe(), asked)
}

// digest wraps a digest in the request field its hash uses.
func digestFor(h crypto.Hash, d []byte) (*kmspb.Digest, bool) {
	switch h {
	case crypto.SHA256:
		return &kmspb.Digest{Digest: &kmspb.Digest_Sha256{Sha256: d}}, true
	case crypto.SHA384:
		return &kmspb.Digest{Digest: &kmspb.Digest_Sha384{Sha384: d}}, true
	case crypto.SHA512:
		return &kmspb.Digest{Digest: &kmspb.Digest_Sha512{Sha512: d}}, true
	}
	return nil, false
}
