package engine

import (
	"context"
	"crypto"
	"time"
)

// Backend is the engine's view of a cloud KMS for one trust domain and one
// server identity. Implementations are safe for concurrent use, hold no
// key state of their own beyond clients, and return errors carrying a gRPC
// status (google.golang.org/grpc/status) whose code says what went wrong.
//
// Methods that take a Generation and return one return it with only the
// fields their documentation names changed: the engine uses the result as
// it is and copies nothing back by hand.
type Backend interface {
	// ListGenerations returns every generation of a SPIRE key in the trust
	// domain that the backend can see: this server's and other servers'.
	// Generations already retired are not returned. A backend whose cloud
	// groups generations (Cloud KMS versions under a CryptoKey) may return
	// one generation per group for other servers' keys, since only this
	// server's generations are ever fetched or signed with; retiring such a
	// generation retires the whole group.
	ListGenerations(ctx context.Context) ([]Generation, error)

	// Create makes a new generation for req.KeyID, recording req.Lease (the
	// creating process's, pending, its Ref left empty) and
	// req.RecentCreations on it. The returned generation has Public set.
	Create(ctx context.Context, req CreateRequest) (Generation, error)

	// Fetch completes a listed generation: it returns g with Public set,
	// and Ref, Type, Version, Algorithm and Disabled refined where the
	// listing could not tell (for example the version a key name currently
	// points at).
	Fetch(ctx context.Context, g Generation) (Generation, error)

	// Sign signs digest with the generation's private key. opts is a
	// crypto.Hash or an *rsa.PSSOptions whose SaltLength is the hash length.
	// ECDSA signatures are returned ASN.1 DER encoded.
	Sign(ctx context.Context, g Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error)

	// KeepAlive writes g's lease record: it marks the generation in use so
	// that other servers' cleanup does not consider it stale, and records
	// g.Leases on it (the leases naming g replace those recorded on g;
	// leases on other generations are kept). It may rewrite the object's
	// labels whole from g.Labels. It returns g with Updated (the time of
	// this write, in the cloud's time), Leases and Labels as the cloud now
	// holds them; when the cloud answers with them, Public and Version too.
	KeepAlive(ctx context.Context, g Generation) (Generation, error)

	// Refresh reads g's lease record again, so that a keep-alive, a lease
	// check or a retirement decides on what the cloud holds now. It returns
	// g with Updated, Leases, Labels and Disabled as the cloud holds them.
	Refresh(ctx context.Context, g Generation) (Generation, error)

	// Retire removes a generation that is no longer in use (deletes or
	// schedules its destruction). Retiring a generation that is already gone
	// is not an error.
	Retire(ctx context.Context, g Generation) error
}

// CreateRequest describes a generation to create.
type CreateRequest struct {
	KeyID string
	Type  KeyType
	// Lease is the creating process's lease, Pending: the generation is
	// not served until the engine commits it with a keep-alive.
	Lease Lease
	// RecentCreations is how many generations of KeyID this server created
	// in the hour up to and including this one. The backend records it
	// with the generation, so that a restarted server still counts them
	// once the superseded ones are retired.
	RecentCreations int
}

// CloudTimer is implemented by backends that learn the cloud's current time
// from its answers (an HTTP Date header, a response time stamp). The engine
// judges every age (leases, staleness, settling) on the cloud's clock, as a
// lower bound built from such times, so that a host clock running ahead of
// or behind the cloud can never make a live key look old.
type CloudTimer interface {
	// CloudTime returns the cloud's time as of the latest answer, or the
	// zero time when no answer carried one yet.
	CloudTime() time.Time
}

// Closer is implemented by backends that hold clients to close at shutdown.
type Closer interface {
	Close() error
}
