package engine

import (
	"context"
	"crypto"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

func (m *Manager) lookup(id string) (*entry, error) {
	m.mu.RLock()
	e := m.entries[id]
	m.mu.RUnlock()
	return e, notFound(e, id)
}

// acquire returns the entry served under id, counted as signing until the
// caller calls its release.
func (m *Manager) acquire(id string) (*entry, error) {
	m.mu.RLock()
	e := m.entries[id]
	if e != nil {
		e.signing.Add(1)
	}
	m.mu.RUnlock()
	if e == nil {
		return nil, notFound(e, id)
	}
	return e, nil
}

// release ends a signature acquire counted.
func (e *entry) release() { e.signing.Add(-1) }

// signMetricNames are the signing path's metric key and labels, built once
// per Manager so that reporting a signature allocates nothing.
type signMetricNames struct {
	latency []string
	keyType map[KeyType][]Label
}

func newSignMetricNames() signMetricNames {
	n := signMetricNames{latency: []string{"kmskeeper", "sign", "latency"}, keyType: map[KeyType][]Label{}}
	for _, t := range []KeyType{ECP256, ECP384, RSA2048, RSA4096} {
		n.keyType[t] = []Label{{"key_type", t.String()}}
	}
	return n
}

func (n signMetricNames) labels(t KeyType) []Label {
	if l, ok := n.keyType[t]; ok {
		return l
	}
	return []Label{{"key_type", t.String()}}
}

func notFound(e *entry, id string) error {
	if e == nil {
		return Errorf(codes.NotFound, "key %q not found", id)
	}
	return nil
}

// GetPublicKey returns the key served under id, from memory.
func (m *Manager) GetPublicKey(_ context.Context, id string) (PublicKey, error) {
	if id == "" {
		return PublicKey{}, Errorf(codes.InvalidArgument, "key ID is empty")
	}
	e, err := m.lookup(id)
	if err != nil {
		return PublicKey{}, err
	}
	return e.pub, nil
}

// GetPublicKeys returns every key served, from memory, sorted by ID.
func (m *Manager) GetPublicKeys(context.Context) ([]PublicKey, error) {
	m.mu.RLock()
	keys := make([]PublicKey, 0, len(m.entries))
	for _, e := range m.entries {
		keys = append(keys, e.pub)
	}
	m.mu.RUnlock()
	slices.SortFunc(keys, func(a, b PublicKey) int { return strings.Compare(a.ID, b.ID) })
	return keys, nil
}

// Serving returns the generations served, by key ID, and those superseded
// with a signature possibly still in flight: what no retirement may touch.
// The simulation checks every retirement against it.
func (m *Manager) Serving() []Generation {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Generation
	for _, e := range m.entries {
		if !e.fromPredecessor {
			out = append(out, e.gen)
		}
	}
	for ref, e := range m.draining {
		if m.servesLocked(ref) {
			out = append(out, e.gen)
		}
	}
	slices.SortFunc(out, func(a, b Generation) int { return strings.Compare(a.Ref, b.Ref) })
	return out
}

// SignData signs a digest with the key served under id and returns the
// signature with the fingerprint of the key that made it. opts is a
// crypto.Hash or an *rsa.PSSOptions. The signature is verified against the
// served public key before it is returned.
func (m *Manager) SignData(ctx context.Context, id string, digest []byte, opts crypto.SignerOpts) (sig []byte, fingerprint string, err error) {
	start := time.Now()
	defer func() {
		if err != nil {
			m.metrics.IncrCounter([]string{"kmskeeper", "sign", "errors"}, 1, Label{"code", Code(err).String()})
		}
	}()
	if id == "" {
		return nil, "", Errorf(codes.InvalidArgument, "key ID is empty")
	}
	e, err := m.acquire(id)
	if err != nil {
		return nil, "", err
	}
	defer e.release()
	bopts, err := normalizeOpts(e.pub.Type, digest, opts)
	if err != nil {
		return nil, "", wrap(err, "key %s", id)
	}
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	if e.fromPredecessor {
		sig, err = m.predecessor.Sign(cctx, e.gen, digest, bopts)
	} else {
		sig, err = m.currentBackend().Sign(cctx, e.gen, digest, bopts)
	}
	if err != nil {
		return nil, "", wrap(err, "key %s: signing with %s", id, e.gen.Ref)
	}
	if err := verify(e.public, digest, sig, bopts); err != nil {
		m.log.Error("Signature from the backend does not verify; not returning it", "key_id", id, "ref", e.gen.Ref, "error", err)
		return nil, "", Errorf(codes.Internal, "key %s: the signature returned by %s does not verify with the key's public key (%v); it was not returned", id, e.gen.Ref, err)
	}
	m.metrics.MeasureSince(m.signNames.latency, start, m.signNames.labels(e.pub.Type)...)
	return sig, e.pub.Fingerprint, nil
}
