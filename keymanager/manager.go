package keymanager

import (
	"context"
	"crypto"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Options configures a Manager.
type Options struct {
	// Backend is the cloud the keys live in. Required.
	Backend Backend
	// ServerID identifies this server among the trust domain's servers.
	ServerID string
	// MaxCreationsPerHour bounds GenerateKey per key ID within any hour.
	// Zero means DefaultMaxCreationsPerHour.
	MaxCreationsPerHour int
	// Budget bounds every call that reaches the backend; it must end before
	// SPIRE's 30 s deadline. Zero means DefaultBudget.
	Budget time.Duration
	// Logger receives the engine's logs. Nil discards them.
	Logger hclog.Logger
	// Metrics receives the engine's measurements. Nil discards them.
	Metrics Metrics
	// Clock is the time source of the scheduler and the rate guard. Nil
	// means the system clock.
	Clock Clock
	// Schedule sets the background passes. Zero fields take the defaults.
	Schedule Schedule
}

// Manager serves SPIRE's KeyManager calls for one trust domain and server.
type Manager struct{}

// New returns a Manager with no keys; Load fills it from the backend.
func New(opts Options) (*Manager, error) { panic("unimplemented") }

// Load lists the backend once, adopts the newest generation of each of this
// server's key IDs and fetches their public keys. Superseded generations are
// left for the first cleanup pass.
func (m *Manager) Load(ctx context.Context) error { panic("unimplemented") }

// Start runs the background liveness and cleanup passes until Close.
func (m *Manager) Start() { panic("unimplemented") }

// Close stops background work, waits for it, and closes the backend.
func (m *Manager) Close() error { panic("unimplemented") }

// GenerateKey creates a new generation for id and makes it the one served.
func (m *Manager) GenerateKey(ctx context.Context, id string, t KeyType) (PublicKey, error) {
	panic("unimplemented")
}

// GetPublicKey returns the key served under id, from memory.
func (m *Manager) GetPublicKey(ctx context.Context, id string) (PublicKey, error) {
	panic("unimplemented")
}

// GetPublicKeys returns every key served, from memory, sorted by ID.
func (m *Manager) GetPublicKeys(ctx context.Context) ([]PublicKey, error) { panic("unimplemented") }

// SignData signs a digest with the key served under id and returns the
// signature with the fingerprint of the key that made it. opts is a
// crypto.Hash or an *rsa.PSSOptions.
func (m *Manager) SignData(ctx context.Context, id string, digest []byte, opts crypto.SignerOpts) (sig []byte, fingerprint string, err error) {
	panic("unimplemented")
}

// Live holds the settings that a runtime re-Configure may change.
type Live struct {
	MaxCreationsPerHour int
	Schedule            Schedule
}

// Reconfigure applies settings that may change while keys are served. If
// backend is not nil it replaces the current backend (same cloud location and
// identity, new options such as tags); the key set is kept.
func (m *Manager) Reconfigure(l Live, backend Backend) { panic("unimplemented") }
