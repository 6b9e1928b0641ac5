package engine

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// KeyType is a key algorithm and size SPIRE can ask for. The values match
// nothing on the wire; the plugin layer maps them.
type KeyType int

// The key types of SPIRE's KeyManager protocol.
const (
	KeyTypeUnspecified KeyType = iota
	ECP256
	ECP384
	RSA2048
	RSA4096
)

// KeyTypes lists every supported key type, in protocol order.
var KeyTypes = [...]KeyType{ECP256, ECP384, RSA2048, RSA4096}

// String returns the name SPIRE's protocol uses for the type.
func (t KeyType) String() string {
	switch t {
	case ECP256:
		return "EC_P256"
	case ECP384:
		return "EC_P384"
	case RSA2048:
		return "RSA_2048"
	case RSA4096:
		return "RSA_4096"
	default:
		return fmt.Sprintf("KeyType(%d)", int(t))
	}
}

// IsEC reports whether the type is an elliptic-curve key.
func (t KeyType) IsEC() bool { return t == ECP256 || t == ECP384 }

// KeyTypeOf returns the type of a public key, or an error when SPIRE has no
// type for it.
func KeyTypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECP256, nil
		case elliptic.P384():
			return ECP384, nil
		}
		return KeyTypeUnspecified, fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
	case *rsa.PublicKey:
		switch k.Size() * 8 {
		case 2048:
			return RSA2048, nil
		case 4096:
			return RSA4096, nil
		}
		return KeyTypeUnspecified, fmt.Errorf("unsupported RSA size %d", k.Size()*8)
	}
	return KeyTypeUnspecified, fmt.Errorf("unsupported public key type %T", pub)
}

// PublicKey is what SPIRE sees of one key instance. The pair (ID,
// Fingerprint) identifies the instance: SPIRE compares the fingerprint of
// every signature with the one it was given.
type PublicKey struct {
	ID          string
	Type        KeyType
	PKIX        []byte // DER SubjectPublicKeyInfo
	Fingerprint string // hex(SHA-256(PKIX)), as SPIRE's built-in plugins compute it
}

// Fingerprint returns hex(SHA-256(der)), the fingerprint SPIRE's built-in
// key managers use, so adopted keys keep theirs.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// Generation is one generation of a SPIRE key as the backend stores it: an
// Azure key object, or a Cloud KMS CryptoKeyVersion.
type Generation struct {
	// KeyID is the SPIRE key ID (for example "x509-CA-A").
	KeyID string
	// Ref is the backend's reference to this generation (a key name and
	// version, a version resource name). The engine only logs and compares it.
	// It must be the same whether the generation was listed, fetched or
	// created, since cleanup compares listed refs with served ones.
	Ref string
	// Version pins the key material when Ref alone does not (an Azure key
	// name, whose listing does not say which version is current): Create and
	// Fetch set it, the engine passes it back to Sign and KeepAlive, and
	// never compares it. Backends whose Ref already pins a version leave it
	// empty.
	Version string
	// ServerID is the owning server's identifier, from the key's tags.
	ServerID string
	// Created orders the generations of one key ID: the newest wins.
	Created time.Time
	// Updated is when the generation's lease record was last written
	// (created, kept alive, a lease added or removed); other servers'
	// cleanup retires keys whose Updated is older than the stale period, and
	// no generation is retired while its record has been written within
	// the settle period.
	Updated time.Time
	// Type is known from listing when the backend can tell; otherwise it
	// comes from the fetched public key.
	Type KeyType
	// Public is the key's public half when the backend already has it
	// (after a create), nil when it must be fetched.
	Public crypto.PublicKey
	// Disabled is set when the cloud reports the generation disabled.
	Disabled bool
	// Algorithm is the backend's name for the one signing algorithm the
	// generation is fixed to, when its cloud fixes one at creation (a Cloud
	// KMS version signs with a single hash and padding). The backend sets it
	// in ListGenerations, Fetch or Create; the engine carries it back to Sign
	// unchanged, so the backend keeps no per-key state to answer a request
	// the key cannot serve.
	Algorithm string
	// Leases are the serving leases the backend read with the generation:
	// those on it and, where the cloud records them together (a Cloud KMS
	// CryptoKey holds its versions' leases), on the other generations of
	// its key ID. Each names the generation it holds.
	Leases []Lease
	// Labels are the cloud object's tags or labels as the backend last read
	// them, for a backend that must rewrite them whole to record a lease.
	// The engine carries them back to KeepAlive unchanged.
	Labels map[string]string
	// RecentCreations is the count recorded at creation (see
	// CreateRequest.RecentCreations); zero when the generation records none.
	RecentCreations int
}

// Lease records that a serving process holds a generation: it serves it, so
// no other process may retire it. A process writes its lease when it creates
// a generation (pending until the creation is committed), when it adopts one
// at start, and at every keep-alive; it removes it at a clean stop. A process
// may die at any time, so a lease counts only while it is younger than the
// lease period.
type Lease struct {
	// Holder identifies the process: random, new at every start.
	Holder string
	// Ref is the generation held.
	Ref string
	// Renewed is when the holder last wrote the lease, in its estimate of
	// the cloud's time (millisecond precision).
	Renewed time.Time
	// Pending marks the lease a creation records before the engine has
	// committed the generation: a generation whose only leases are pending
	// was never served, so no server ever adopts it.
	Pending bool
}
