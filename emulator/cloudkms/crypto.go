package cloudkms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"hash/crc32"

	"cloud.google.com/go/kms/apiv1/kmspb"
)

// keyKind is the family of key material an algorithm needs.
type keyKind int

const (
	kindEC keyKind = iota + 1
	kindRSA
	kindEd25519
)

// algorithm describes one CryptoKeyVersionAlgorithm the emulator implements:
// Cloud KMS fixes both the padding and the digest per algorithm, so a P-256
// key cannot sign a SHA-384 digest and an RSA key is either PKCS#1 v1.5 or
// PSS, never both.
type algorithm struct {
	kind  keyKind
	curve elliptic.Curve
	bits  int
	hash  crypto.Hash // 0 for algorithms that sign raw data (Ed25519)
	pss   bool
}

// algorithms lists the asymmetric signing algorithms the emulator supports.
var algorithms = map[kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm]algorithm{
	kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256:        {kind: kindEC, curve: elliptic.P256(), hash: crypto.SHA256},
	kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384:        {kind: kindEC, curve: elliptic.P384(), hash: crypto.SHA384},
	kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256: {kind: kindRSA, bits: 2048, hash: crypto.SHA256},
	kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_3072_SHA256: {kind: kindRSA, bits: 3072, hash: crypto.SHA256},
	kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256: {kind: kindRSA, bits: 4096, hash: crypto.SHA256},
	kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA512: {kind: kindRSA, bits: 4096, hash: crypto.SHA512},
	kmspb.CryptoKeyVersion_RSA_SIGN_PSS_2048_SHA256:   {kind: kindRSA, bits: 2048, hash: crypto.SHA256, pss: true},
	kmspb.CryptoKeyVersion_RSA_SIGN_PSS_3072_SHA256:   {kind: kindRSA, bits: 3072, hash: crypto.SHA256, pss: true},
	kmspb.CryptoKeyVersion_RSA_SIGN_PSS_4096_SHA256:   {kind: kindRSA, bits: 4096, hash: crypto.SHA256, pss: true},
	kmspb.CryptoKeyVersion_RSA_SIGN_PSS_4096_SHA512:   {kind: kindRSA, bits: 4096, hash: crypto.SHA512, pss: true},
	kmspb.CryptoKeyVersion_EC_SIGN_ED25519:            {kind: kindEd25519},
}

// generateKey creates fresh key material for alg.
func generateKey(alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm) (crypto.Signer, error) {
	a, ok := algorithms[alg]
	if !ok {
		return nil, fmt.Errorf("unsupported algorithm %v", alg)
	}
	switch a.kind {
	case kindEC:
		return ecdsa.GenerateKey(a.curve, rand.Reader)
	case kindRSA:
		return rsa.GenerateKey(rand.Reader, a.bits)
	default:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
}

// checkKeyMatches reports whether key (for seeding) fits alg.
func checkKeyMatches(alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm, key crypto.Signer) error {
	a, ok := algorithms[alg]
	if !ok {
		return fmt.Errorf("unsupported algorithm %v", alg)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if a.kind == kindEC && k.Curve == a.curve {
			return nil
		}
	case *rsa.PrivateKey:
		if a.kind == kindRSA && k.N.BitLen() == a.bits {
			return nil
		}
	case ed25519.PrivateKey:
		if a.kind == kindEd25519 {
			return nil
		}
	}
	return fmt.Errorf("a %T does not fit algorithm %v", key, alg)
}

// sign produces a signature the way Cloud KMS does: ASN.1 DER for ECDSA,
// PKCS#1 v1.5 or PSS with salt length = digest length for RSA, pure Ed25519
// over data.
func sign(alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm, key crypto.Signer, digestOrData []byte) ([]byte, error) {
	a := algorithms[alg]
	switch {
	case a.kind == kindEd25519:
		return key.Sign(rand.Reader, digestOrData, crypto.Hash(0))
	case a.pss:
		return key.Sign(rand.Reader, digestOrData, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: a.hash})
	default:
		return key.Sign(rand.Reader, digestOrData, a.hash)
	}
}

// publicKeyPEM encodes the public half as a PEM "PUBLIC KEY" (PKIX) block,
// as GetPublicKey returns it.
func publicKeyPEM(key crypto.Signer) (string, []byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", nil, fmt.Errorf("marshal public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), der, nil
}

// castagnoli is the CRC32C table every Cloud KMS integrity field uses.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c returns the CRC32C of b as the int64 the API carries.
func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }
