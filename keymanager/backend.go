package keymanager

import (
	"context"
	"crypto"
)

// Backend is the engine's view of a cloud KMS for one trust domain and one
// server identity. Implementations are safe for concurrent use, hold no
// key state of their own beyond clients, and return errors carrying a gRPC
// status (google.golang.org/grpc/status) whose code says what went wrong.
type Backend interface {
	// ListGenerations returns every generation of a SPIRE key in the trust
	// domain that the backend can see: this server's and other servers'.
	// Generations already retired are not returned. A backend whose cloud
	// groups generations (Cloud KMS versions under a CryptoKey) may return
	// one generation per group for other servers' keys, since only this
	// server's generations are ever fetched or signed with; retiring such a
	// generation retires the whole group.
	ListGenerations(ctx context.Context) ([]Generation, error)

	// Create makes a new generation for keyID, recording lease (the
	// creating process's, its Ref left empty) on it. The returned generation
	// has Public set.
	Create(ctx context.Context, keyID string, keyType KeyType, lease Lease) (Generation, error)

	// Fetch completes a listed generation: it returns g with Public set,
	// and Ref, Type and Disabled refined where the listing could not tell
	// (for example the version a key name currently points at).
	Fetch(ctx context.Context, g Generation) (Generation, error)

	// Sign signs digest with the generation's private key. opts is a
	// crypto.Hash or an *rsa.PSSOptions whose SaltLength is the hash length.
	// ECDSA signatures are returned ASN.1 DER encoded.
	Sign(ctx context.Context, g Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error)

	// KeepAlive marks a generation in use so that other servers' cleanup
	// does not consider it stale, and records g.Leases on it: the leases
	// naming g replace those recorded on g; leases on other generations are
	// kept. It may rewrite the object's labels whole from g.Labels. It
	// returns g with the new Updated time and, when the cloud answers with
	// them, its Public key and Version.
	KeepAlive(ctx context.Context, g Generation) (Generation, error)

	// Refresh reads g's leases and labels again, so that a keep-alive or a
	// retirement decides on what the cloud holds now.
	Refresh(ctx context.Context, g Generation) (Generation, error)

	// Retire removes a generation that is no longer in use (deletes or
	// schedules its destruction). Retiring a generation that is already gone
	// is not an error.
	Retire(ctx context.Context, g Generation) error
}

// SiblingLeases is implemented by backends whose cloud records the leases
// of all generations of a key ID in one place (a Cloud KMS CryptoKey): the
// Leases of a generation they return then cover the key ID's other
// generations too, so after a creation the engine reads nothing more to
// decide whether the superseded generation may be retired.
type SiblingLeases interface {
	LeasesCoverKeyID() bool
}

// Closer is implemented by backends that hold clients to close at shutdown.
type Closer interface {
	Close() error
}
