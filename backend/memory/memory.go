// Package memory is a engine.Backend that keeps private keys in process
// memory or in a local file. It exists for tests: the engine's unit tests,
// and end-to-end tests of a binary built with the kmskeeper_testbackend tag.
// It offers none of a KMS's protection and the default build never holds it.
package memory

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Store holds the keys of every trust domain and server, like a vault.
type Store struct {
	mu    sync.Mutex
	path  string // "" keeps the state in memory only
	now   func() time.Time
	state state
	// Hook, if set, runs before every backend operation with the
	// operation's name ("List", "Create", "Fetch", "Sign", "KeepAlive",
	// "Retire") and key ID; an error it returns fails the operation. Tests
	// use it to block or fail calls.
	Hook func(ctx context.Context, op, keyID string) error
}

type state struct {
	Seq  int       `json:"seq"`
	Keys []*record `json:"keys"`
	// ClockOffset moves the store's clock (creation and update times)
	// ahead of the system clock, like a cloud whose clock a test advances.
	ClockOffset time.Duration `json:"clock_offset,omitempty"`
	// Faults are injected into the operations of every process sharing
	// the store (see Fault).
	Faults []*Fault `json:"faults,omitempty"`
}

type record struct {
	Ref         string    `json:"ref"`
	KeyID       string    `json:"key_id"`
	TrustDomain string    `json:"trust_domain"`
	ServerID    string    `json:"server_id"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	Disabled    bool      `json:"disabled,omitempty"`
	PKCS8       []byte    `json:"pkcs8"`
	// Leases are the serving leases recorded on the key, as a cloud
	// records them in a tag.
	Leases []engine.Lease `json:"leases,omitempty"`
	// Recent is the creation count the engine asked to record.
	Recent int `json:"recent,omitempty"`
}

// NewStore returns an empty store kept in memory.
func NewStore() *Store { return &Store{now: time.Now} }

// OpenStore returns a store kept in the file at path, shared by every
// process that opens the same path.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path, now: time.Now}
	if err := s.withFile(false, func() error { return nil }); err != nil {
		return nil, err
	}
	return s, nil
}

// SetClock makes the store stamp keys with now() instead of the system clock.
func (s *Store) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// withFile runs fn with the state loaded, under the store's lock and, for a
// file store, an exclusive file lock; when write is true the state is saved
// afterwards.
func (s *Store) withFile(write bool, fn func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path == "" {
		return fn()
	}
	lock, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	s.state = state{}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, &s.state); err != nil {
			return fmt.Errorf("memory store %s: %w", s.path, err)
		}
	}
	if err := fn(); err != nil || !write {
		return err
	}
	data, err = json.Marshal(&s.state)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".memstore-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	return os.Rename(tmp.Name(), s.path)
}

// Backend returns the view of the store for one trust domain and server.
func (s *Store) Backend(trustDomain, serverID string) *Backend {
	return &Backend{store: s, td: trustDomain, serverID: serverID}
}

// Add stores a generation directly, as another server or an older version
// of the plugin would have laid it out. It returns the generation's ref.
func (s *Store) Add(trustDomain, serverID, keyID string, key crypto.Signer, created, updated time.Time) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	var ref string
	err = s.withFile(true, func() error {
		s.state.Seq++
		ref = fmt.Sprintf("mem-%06d-%s", s.state.Seq, keyID)
		s.state.Keys = append(s.state.Keys, &record{Ref: ref, KeyID: keyID, TrustDomain: trustDomain, ServerID: serverID, Created: created, Updated: updated, PKCS8: der})
		return nil
	})
	return ref, err
}

// Refs returns the refs of every stored generation, for assertions.
func (s *Store) Refs() []string {
	var refs []string
	s.withFile(false, func() error {
		for _, r := range s.state.Keys {
			refs = append(refs, r.Ref)
		}
		return nil
	})
	return refs
}

// Generations returns every stored generation of a trust domain with its
// public key, as a test's view of the vault: no hook or fault applies.
func (s *Store) Generations(trustDomain string) ([]engine.Generation, error) {
	var out []engine.Generation
	err := s.withFile(false, func() error {
		for _, r := range s.state.Keys {
			if r.TrustDomain != trustDomain {
				continue
			}
			key, err := x509.ParsePKCS8PrivateKey(r.PKCS8)
			if err != nil {
				return fmt.Errorf("memory store: key %s: %w", r.Ref, err)
			}
			g := (&Backend{}).generation(r)
			g.Public = key.(crypto.Signer).Public()
			out = append(out, g)
		}
		return nil
	})
	return out, err
}

// SetDisabled disables or enables a stored generation.
func (s *Store) SetDisabled(ref string, disabled bool) error {
	return s.withFile(true, func() error {
		for _, r := range s.state.Keys {
			if r.Ref == ref {
				r.Disabled = disabled
				return nil
			}
		}
		return fmt.Errorf("no key %s", ref)
	})
}

// Backend is a engine.Backend over a Store.
type Backend struct {
	store    *Store
	td       string
	serverID string

	mu    sync.Mutex
	cloud time.Time // the store's time at the latest answer
}

// CloudTime implements engine.CloudTimer: the store's clock at the
// latest answer, as a cloud's Date header gives it.
func (b *Backend) CloudTime() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cloud
}

// answered records the store's time of an answer.
func (b *Backend) answered() {
	var now time.Time
	b.store.withFile(false, func() error { now = b.store.cloudNow(); return nil })
	b.mu.Lock()
	if now.After(b.cloud) {
		b.cloud = now
	}
	b.mu.Unlock()
}

var _ engine.Backend = (*Backend)(nil)

func (b *Backend) hook(ctx context.Context, op, keyID string) error {
	b.store.mu.Lock()
	h := b.store.Hook
	b.store.mu.Unlock()
	if h != nil {
		if err := h(ctx, op, keyID); err != nil {
			return err
		}
	}
	if err := b.store.fault(ctx, op, PhaseBefore); err != nil {
		return err
	}
	return ctx.Err()
}

func (b *Backend) generation(r *record) engine.Generation {
	return engine.Generation{KeyID: r.KeyID, Ref: r.Ref, ServerID: r.ServerID, Created: r.Created, Updated: r.Updated, Disabled: r.Disabled, Leases: slices.Clone(r.Leases), RecentCreations: r.Recent}
}

func (b *Backend) find(ref string) (*record, error) {
	for _, r := range b.store.state.Keys {
		if r.Ref == ref && r.TrustDomain == b.td {
			return r, nil
		}
	}
	return nil, engine.Errorf(codes.NotFound, "memory backend: key %s not found", ref)
}

// ListGenerations implements engine.Backend.
func (b *Backend) ListGenerations(ctx context.Context) ([]engine.Generation, error) {
	defer b.answered()
	if err := b.hook(ctx, "List", ""); err != nil {
		return nil, err
	}
	var out []engine.Generation
	err := b.store.withFile(false, func() error {
		for _, r := range b.store.state.Keys {
			if r.TrustDomain == b.td {
				out = append(out, b.generation(r))
			}
		}
		return nil
	})
	return out, err
}

// Create implements engine.Backend.
func (b *Backend) Create(ctx context.Context, req engine.CreateRequest) (engine.Generation, error) {
	keyID, t, lease := req.KeyID, req.Type, req.Lease
	defer b.answered()
	if err := b.hook(ctx, "Create", keyID); err != nil {
		return engine.Generation{}, err
	}
	key, err := generate(t)
	if err != nil {
		return engine.Generation{}, engine.Errorf(codes.InvalidArgument, "memory backend: %v", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return engine.Generation{}, err
	}
	var g engine.Generation
	err = b.store.withFile(true, func() error {
		now := b.store.cloudNow()
		b.store.state.Seq++
		r := &record{Ref: fmt.Sprintf("mem-%06d-%s", b.store.state.Seq, keyID), KeyID: keyID, TrustDomain: b.td, ServerID: b.serverID, Created: now, Updated: now, PKCS8: der, Recent: req.RecentCreations}
		lease.Ref = r.Ref
		r.Leases = []engine.Lease{lease}
		b.store.state.Keys = append(b.store.state.Keys, r)
		g = b.generation(r)
		return nil
	})
	g.Public = key.Public()
	g.Type = t
	if err == nil {
		err = b.store.fault(ctx, "Create", PhaseAfter)
	}
	return g, err
}

func generate(t engine.KeyType) (crypto.Signer, error) {
	switch t {
	case engine.ECP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case engine.ECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case engine.RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case engine.RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("unsupported key type %v", t)
}

func (b *Backend) signer(ctx context.Context, op string, g engine.Generation) (crypto.Signer, error) {
	if err := b.hook(ctx, op, g.KeyID); err != nil {
		return nil, err
	}
	var der []byte
	err := b.store.withFile(false, func() error {
		r, err := b.find(g.Ref)
		if err != nil {
			return err
		}
		if r.Disabled {
			return engine.Errorf(codes.FailedPrecondition, "memory backend: key %s is disabled", g.Ref)
		}
		der = r.PKCS8
		return nil
	})
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	return key.(crypto.Signer), nil
}

// Fetch implements engine.Backend.
func (b *Backend) Fetch(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	defer b.answered()
	k, err := b.signer(ctx, "Fetch", g)
	if err != nil {
		return g, err
	}
	g.Public = k.Public()
	return g, b.store.fault(ctx, "Fetch", PhaseAfter)
}

// Sign implements engine.Backend.
func (b *Backend) Sign(ctx context.Context, g engine.Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k, err := b.signer(ctx, "Sign", g)
	if err != nil {
		return nil, err
	}
	sig, err := k.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, err
	}
	return sig, b.store.fault(ctx, "Sign", PhaseAfter)
}

// KeepAlive implements engine.Backend.
func (b *Backend) KeepAlive(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	defer b.answered()
	if err := b.hook(ctx, "KeepAlive", g.KeyID); err != nil {
		return g, err
	}
	err := b.store.withFile(true, func() error {
		r, err := b.find(g.Ref)
		if err != nil {
			return err
		}
		r.Updated = b.store.cloudNow()
		r.Leases = r.Leases[:0]
		for _, l := range g.Leases {
			if l.Ref == r.Ref {
				r.Leases = append(r.Leases, l)
			}
		}
		g.Updated, g.Leases = r.Updated, slices.Clone(r.Leases)
		return nil
	})
	if err == nil {
		err = b.store.fault(ctx, "KeepAlive", PhaseAfter)
	}
	return g, err
}

// Refresh implements engine.Backend.
func (b *Backend) Refresh(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	defer b.answered()
	if err := b.hook(ctx, "Refresh", g.KeyID); err != nil {
		return g, err
	}
	err := b.store.withFile(false, func() error {
		r, err := b.find(g.Ref)
		if err != nil {
			return err
		}
		g.Leases, g.Updated, g.Disabled = slices.Clone(r.Leases), r.Updated, r.Disabled
		return nil
	})
	if err == nil {
		err = b.store.fault(ctx, "Refresh", PhaseAfter)
	}
	return g, err
}

// Retire implements engine.Backend.
func (b *Backend) Retire(ctx context.Context, g engine.Generation) error {
	defer b.answered()
	if err := b.hook(ctx, "Retire", g.KeyID); err != nil {
		return err
	}
	err := b.store.withFile(true, func() error {
		keys := b.store.state.Keys[:0]
		for _, r := range b.store.state.Keys {
			if r.Ref != g.Ref {
				keys = append(keys, r)
			}
		}
		b.store.state.Keys = keys
		return nil
	})
	if err != nil {
		return err
	}
	return b.store.fault(ctx, "Retire", PhaseAfter)
}
