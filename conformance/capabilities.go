package conformance

import (
	"crypto"
	"crypto/rsa"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Capabilities says what a backend supports, so that the suite tests exactly
// that and expects InvalidArgument for what it lists as refused.
type Capabilities struct {
	// KeyTypes lists the key types the backend creates.
	KeyTypes []engine.KeyType
	// Hashes lists, for each key type in KeyTypes, the hashes it signs with
	// (ECDSA, or RSA PKCS#1 v1.5). Every key type needs an entry here or in
	// PSS: an RSA key that signs only PSS (a Cloud KMS key created for PSS)
	// has none here.
	Hashes map[engine.KeyType][]crypto.Hash
	// PSS lists, for each RSA key type, the hashes it signs RSA-PSS with. A
	// key type without an entry is not tested with PSS.
	PSS map[engine.KeyType][]crypto.Hash
	// Refused lists, per key type, protocol hashes the backend answers with
	// InvalidArgument. Optional.
	Refused map[engine.KeyType][]crypto.Hash
}

// defaultOpts returns the signer options the suite signs with when a case
// needs one valid request for kt: its first hash, else PSS with its first
// PSS hash.
func (c Capabilities) defaultOpts(kt engine.KeyType) crypto.SignerOpts {
	if hs := c.Hashes[kt]; len(hs) > 0 {
		return hs[0]
	}
	return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: c.PSS[kt][0]}
}

// ProtocolHashes returns every hash SPIRE's KeyManager protocol can name.
func ProtocolHashes() []crypto.Hash {
	return []crypto.Hash{
		crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512,
		crypto.SHA3_224, crypto.SHA3_256, crypto.SHA3_384, crypto.SHA3_512,
		crypto.SHA512_224, crypto.SHA512_256,
	}
}

// AllCapabilities returns the capabilities of a backend that signs with
// every key type, every protocol hash and PSS: the in-memory backend.
func AllCapabilities() Capabilities {
	c := Capabilities{
		KeyTypes: engine.KeyTypes[:],
		Hashes:   map[engine.KeyType][]crypto.Hash{},
		PSS:      map[engine.KeyType][]crypto.Hash{},
	}
	for _, t := range c.KeyTypes {
		c.Hashes[t] = ProtocolHashes()
		if !t.IsEC() {
			c.PSS[t] = ProtocolHashes()
		}
	}
	return c
}
