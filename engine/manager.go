package engine

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults for Options and Schedule.
const (
	// DefaultMaxCreationsPerHour bounds GenerateKey per key ID and hour.
	DefaultMaxCreationsPerHour = 10
	// DefaultBudget is the time any call may spend in the backend: well
	// inside SPIRE's 30 s deadline, leaving room for the answer to travel.
	DefaultBudget = 25 * time.Second
	// deadlineMargin is kept free before a caller's own deadline.
	deadlineMargin = 2 * time.Second
	// defaultParallelism bounds concurrent backend calls at load and stop.
	defaultParallelism = 8
)

// Options configures a Manager.
type Options struct {
	// Backend is the cloud the keys live in. Required.
	Backend Backend
	// ServerID identifies this server among the trust domain's servers.
	// Required.
	ServerID string
	// MaxCreationsPerHour bounds GenerateKey per key ID within any hour.
	// Zero means DefaultMaxCreationsPerHour.
	MaxCreationsPerHour int
	// Budget bounds every call that reaches the backend; it must end before
	// SPIRE's 30 s deadline. Zero means DefaultBudget.
	Budget time.Duration
	// Settle is how long a superseded generation waits, unwritten, before
	// it is retired. Zero means DefaultSettle; it must exceed
	// leaseCheckDelay plus four budgets, and is raised to that.
	Settle time.Duration
	// Logger receives the engine's logs. Nil discards them.
	Logger hclog.Logger
	// Metrics receives the engine's measurements. Nil discards them.
	Metrics Metrics
	// Clock is the time source of the scheduler. Nil means the system
	// clock. Ages are judged on the cloud's clock, estimated from the times
	// the backend reports; Clock only measures the time elapsed since.
	Clock Clock
	// Schedule sets the background passes. Zero fields take the defaults.
	Schedule Schedule
	// Predecessor, if set, serves the keys of the predecessor (migrate_from) for the
	// key IDs the backend does not hold yet.
	Predecessor Predecessor
	// Holder names this process in the leases it records. Empty means a
	// random one; tests set it to recognise a process's leases.
	Holder string
	// Parallelism bounds the backend calls made at once at start and stop.
	// Zero means 8; the simulation sets 1 so that a seed replays exactly.
	Parallelism int
}

// entry is one key served under a SPIRE key ID. Entries are immutable once
// stored, except for their signing count: a rotation or keep-alive stores a
// new one.
type entry struct {
	gen    Generation
	public crypto.PublicKey
	pub    PublicKey
	// fromPredecessor marks a key served from the Predecessor.
	fromPredecessor bool
	// signing counts SignData calls using this entry, so that a superseded
	// generation is retired only once no signature is in flight with it.
	signing *atomic.Int64
	// superseded is when the entry stopped being served (local clock).
	superseded time.Time
}

// Manager serves SPIRE's KeyManager calls for one trust domain and server.
// All methods are safe for concurrent use. Its lock guards only memory: it is
// never held across a backend call.
type Manager struct {
	serverID    string
	holder      string
	budget      time.Duration
	settle      time.Duration
	parallelism int
	log         hclog.Logger
	metrics     Metrics
	signNames   signMetricNames
	clock       Clock
	cloud       *CloudClock
	guard       *rateGuard
	predecessor Predecessor

	mu            sync.RWMutex
	backend       Backend
	schedule      Schedule
	entries       map[string]*entry // served, by key ID
	draining      map[string]*entry // superseded and not yet retired, by ref
	tasks         map[string]*task  // lease checks and retirements, by ref
	startedAt     time.Time         // the cloud's time at Load, as estimated
	migrationDone bool              // the completion of the migration was logged

	dupMu      sync.Mutex
	duplicates map[string]bool // holders reported as sharing this server ID

	bg       sync.WaitGroup
	stop     chan struct{}
	wake     chan struct{} // wakes the pass loop: new schedule or earlier task
	stopOnce sync.Once
	started  bool
}

// New returns a Manager with no keys; Load fills it from the backend.
func New(opts Options) (*Manager, error) {
	if opts.Backend == nil {
		return nil, errors.New("engine: no backend")
	}
	if opts.ServerID == "" {
		return nil, errors.New("engine: no server ID")
	}
	m := &Manager{
		serverID:    opts.ServerID,
		holder:      opts.Holder,
		budget:      opts.Budget,
		settle:      opts.Settle,
		parallelism: opts.Parallelism,
		log:         opts.Logger,
		metrics:     opts.Metrics,
		signNames:   newSignMetricNames(),
		clock:       opts.Clock,
		backend:     opts.Backend,
		predecessor: opts.Predecessor,
		schedule:    opts.Schedule.withDefaults(),
		entries:     make(map[string]*entry),
		draining:    make(map[string]*entry),
		tasks:       make(map[string]*task),
		duplicates:  make(map[string]bool),
		stop:        make(chan struct{}),
		wake:        make(chan struct{}, 1),
	}
	if m.budget <= 0 {
		m.budget = DefaultBudget
	}
	if m.settle <= 0 {
		m.settle = DefaultSettle
	}
	m.settle = max(m.settle, m.leaseCheckDelay()+4*m.budget)
	if m.parallelism <= 0 {
		m.parallelism = defaultParallelism
	}
	if m.holder == "" {
		m.holder = newHolder()
	}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	if m.metrics == nil {
		m.metrics = NopMetrics{}
	}
	if m.clock == nil {
		m.clock = systemClock{}
	}
	m.cloud = NewCloudClock(m.clock.Now)
	maxCreations := opts.MaxCreationsPerHour
	if maxCreations <= 0 {
		maxCreations = DefaultMaxCreationsPerHour
	}
	m.guard = newRateGuard(maxCreations)
	return m, nil
}

// ServerID returns the server identity the manager serves keys for.
func (m *Manager) ServerID() string { return m.serverID }

// Holder returns the name this process records in its leases.
func (m *Manager) Holder() string { return m.holder }

// callCtx derives the context for one backend call: it ends after the
// budget, and at least deadlineMargin before the caller's own deadline.
func (m *Manager) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(m.budget)
	if d, ok := ctx.Deadline(); ok && d.Add(-deadlineMargin).Before(deadline) {
		deadline = d.Add(-deadlineMargin)
	}
	return context.WithDeadline(ctx, deadline)
}

func (m *Manager) currentBackend() Backend {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.backend
}

// synced notes the cloud time b's latest answer carried, and the creation
// times of gens (the cloud sets them), then returns the cloud's time.
func (m *Manager) synced(b Backend, gens ...Generation) time.Time {
	if t, ok := b.(CloudTimer); ok {
		m.cloud.Observe(t.CloudTime())
	}
	for _, g := range gens {
		m.cloud.Observe(g.Created)
	}
	return m.cloud.Now()
}

// facts returns what this process's retirement decisions know. The caller
// holds m.mu (read).
func (m *Manager) facts(now time.Time) Facts {
	served := make(map[string]bool, len(m.entries)+len(m.draining))
	for _, e := range m.entries {
		if !e.fromPredecessor {
			served[e.gen.Ref] = true
		}
	}
	for ref := range m.draining {
		if m.servesLocked(ref) {
			served[ref] = true
		}
	}
	// A snapshot: the facts are used after the lock is released, and
	// what is served only shrinks for a superseded generation.
	return Facts{ServerID: m.serverID, Holder: m.holder, Serves: func(ref string) bool { return served[ref] }, Now: now, Schedule: m.schedule, Settle: m.settle}
}

// servesLocked reports whether ref is served, or superseded so recently
// that a signature with it may still be in flight. The caller holds m.mu.
func (m *Manager) servesLocked(ref string) bool {
	for _, e := range m.entries {
		if e.gen.Ref == ref && !e.fromPredecessor {
			return true
		}
	}
	if e := m.draining[ref]; e != nil && e.signing.Load() > 0 && m.clock.Now().Sub(e.superseded) < m.budget {
		return true
	}
	return false
}

// Live holds the settings that a runtime re-Configure may change.
type Live struct {
	MaxCreationsPerHour int
	Schedule            Schedule
}

// Reconfigure applies settings that may change while keys are served. If
// backend is not nil it replaces the current backend (same cloud location and
// identity, new options such as tags); the key set is kept and keeps signing.
func (m *Manager) Reconfigure(l Live, backend Backend) {
	if l.MaxCreationsPerHour > 0 {
		m.guard.setMax(l.MaxCreationsPerHour)
	}
	m.mu.Lock()
	old := m.backend
	if backend != nil {
		m.backend = backend
	}
	m.schedule = l.Schedule.withDefaults()
	m.mu.Unlock()
	m.poke() // a shorter interval applies at once
	if backend != nil && backend != old {
		if c, ok := old.(Closer); ok {
			// In-flight calls on the old backend finish on their own
			// contexts; closing only releases idle clients.
			m.bg.Add(1)
			go func() {
				defer m.bg.Done()
				c.Close()
			}()
		}
	}
	m.log.Info("Applied new configuration", "max_key_creations_per_hour", l.MaxCreationsPerHour)
}

// poke wakes the pass loop.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Close stops background work, waits for it, removes this process's leases
// (a clean stop: a successor may then retire what this process served as
// soon as it supersedes it) and closes the backend.
func (m *Manager) Close() error {
	first := false
	m.stopOnce.Do(func() { close(m.stop); first = true })
	m.bg.Wait()
	if first {
		m.mu.RLock()
		var held []Generation
		for _, e := range m.entries {
			if !e.fromPredecessor {
				held = append(held, e.gen)
			}
		}
		for _, e := range m.draining {
			held = append(held, e.gen)
		}
		b := m.backend
		m.mu.RUnlock()
		slices.SortFunc(held, func(a, b Generation) int { return strings.Compare(a.Ref, b.Ref) })
		m.release(b, held)
	}
	var err error
	if c, ok := m.predecessor.(Closer); ok {
		err = c.Close()
	}
	if c, ok := m.currentBackend().(Closer); ok {
		err = errors.Join(err, c.Close())
	}
	return err
}

func (m *Manager) String() string {
	return fmt.Sprintf("engine.Manager(server=%s)", m.serverID)
}

// inParallel runs f(0) to f(n-1), at most m.parallelism at a time, and
// returns when all have.
func (m *Manager) inParallel(n int, f func(i int)) {
	if m.parallelism == 1 {
		for i := range n {
			f(i)
		}
		return
	}
	sem := make(chan struct{}, m.parallelism)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}

// NopMetrics is the Metrics of a process with no metrics service (the CLI,
// tests): measurements are discarded, so that code that measures never has
// to check whether anyone listens.
type NopMetrics struct{}

// IncrCounter implements Metrics.
func (NopMetrics) IncrCounter([]string, float32, ...Label) {}

// MeasureSince implements Metrics.
func (NopMetrics) MeasureSince([]string, time.Time, ...Label) {}
