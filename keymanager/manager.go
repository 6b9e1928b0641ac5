package keymanager

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
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
	// fetchParallelism bounds concurrent public key fetches at load.
	fetchParallelism = 8
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
	// Logger receives the engine's logs. Nil discards them.
	Logger hclog.Logger
	// Metrics receives the engine's measurements. Nil discards them.
	Metrics Metrics
	// Clock is the time source of the scheduler and the rate guard. Nil
	// means the system clock.
	Clock Clock
	// Schedule sets the background passes. Zero fields take the defaults.
	Schedule Schedule
	// Predecessor, if set, serves the keys of a migration source for the
	// key IDs the backend does not hold yet.
	Predecessor Predecessor
	// Holder names this process in the leases it records. Empty means a
	// random one; tests set it to recognise a process's leases.
	Holder string
}

// entry is one key served under a SPIRE key ID. Entries are immutable once
// stored: a rotation or keep-alive stores a new one.
type entry struct {
	gen    Generation
	public crypto.PublicKey
	pub    PublicKey
	// inherited marks a key served from the Predecessor.
	inherited bool
	// signing counts SignData calls using this entry, so that a superseded
	// generation is retired only once no signature is in flight with it.
	signing *atomic.Int64
}

// Manager serves SPIRE's KeyManager calls for one trust domain and server.
// All methods are safe for concurrent use. Its lock guards only memory: it is
// never held across a backend call.
type Manager struct {
	serverID    string
	holder      string
	budget      time.Duration
	log         hclog.Logger
	metrics     Metrics
	clock       Clock
	guard       *rateGuard
	predecessor Predecessor

	mu            sync.RWMutex
	backend       Backend
	schedule      Schedule
	entries       map[string]*entry
	known         map[string]bool // refs this manager created, adopted or superseded
	created       map[string]bool // refs this manager created
	inFlight      map[string]int  // GenerateKey calls running, per key ID
	cloudOffset   time.Duration   // how far the cloud's clock is ahead of ours
	leftovers     []Generation    // superseded generations found at load
	failed        []failedCreate  // creations that failed, whose keys may exist
	migrationDone bool            // the completion of the migration was logged
	startedAt     time.Time       // the cloud's time at Load, as estimated

	dupMu      sync.Mutex
	duplicates map[string]bool // holders reported as sharing this server ID

	bg       sync.WaitGroup
	stop     chan struct{}
	resched  chan struct{} // wakes the pass loop when Reconfigure changes the schedule
	stopOnce sync.Once
	started  bool
}

// New returns a Manager with no keys; Load fills it from the backend.
func New(opts Options) (*Manager, error) {
	if opts.Backend == nil {
		return nil, errors.New("keymanager: no backend")
	}
	if opts.ServerID == "" {
		return nil, errors.New("keymanager: no server ID")
	}
	m := &Manager{
		serverID:    opts.ServerID,
		holder:      opts.Holder,
		budget:      opts.Budget,
		log:         opts.Logger,
		metrics:     opts.Metrics,
		clock:       opts.Clock,
		backend:     opts.Backend,
		predecessor: opts.Predecessor,
		schedule:    opts.Schedule.withDefaults(),
		entries:     make(map[string]*entry),
		known:       make(map[string]bool),
		created:     make(map[string]bool),
		inFlight:    make(map[string]int),
		duplicates:  make(map[string]bool),
		stop:        make(chan struct{}),
		resched:     make(chan struct{}, 1),
	}
	if m.budget <= 0 {
		m.budget = DefaultBudget
	}
	if m.holder == "" {
		m.holder = newHolder()
	}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	if m.metrics == nil {
		m.metrics = nopMetrics{}
	}
	if m.clock == nil {
		m.clock = systemClock{}
	}
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

// Load lists the backend once, adopts the newest generation of each of this
// server's key IDs and fetches their public keys. Superseded generations are
// retired in the background once Start is called.
func (m *Manager) Load(ctx context.Context) error {
	ctx, cancel := m.callCtx(ctx)
	defer cancel()
	b := m.currentBackend()
	gens, err := b.ListGenerations(ctx)
	if err != nil {
		return wrap(err, "loading keys: listing the backend")
	}
	m.observe(gens...)
	byID := keyGroups(gens, m.serverID)
	var winners, losers []Generation
	for _, list := range byID {
		list = slices.Clone(list)
		sortNewestFirst(list)
		winners = append(winners, list[0])
		losers = append(losers, list[1:]...)
	}
	for _, w := range winners {
		if w.Disabled {
			return Errorf(codes.FailedPrecondition, "key %s: its current generation %s is disabled in the cloud; enable it, or delete it so that SPIRE prepares a new key", w.KeyID, w.Ref)
		}
	}
	m.mu.Lock()
	now := m.cloudNow()
	m.startedAt = now
	ttl := m.schedule.leaseTTL()
	m.mu.Unlock()
	// A superseded generation another live process still holds is not
	// retired: that process may be a duplicate serving it.
	check := holdCheck{groups: byID, self: m.holder, now: now, ttl: ttl}
	free := losers[:0:0]
	for _, g := range losers {
		if l, held := check.blocked(g); held {
			m.log.Info("Keeping a superseded key generation: another process holds a lease on it", "key_id", g.KeyID, "ref", g.Ref, "holder", l.Holder, "lease_renewed", l.Renewed.UTC().Format(time.RFC3339))
			continue
		}
		free = append(free, g)
	}
	losers = free
	// A migration that must be refused is refused before anything is
	// written to the cloud.
	var inherited map[string]*entry
	if m.predecessor != nil {
		if inherited, err = m.loadPredecessor(ctx, winners); err != nil {
			return err
		}
	}
	winners = m.claimAll(ctx, b, winners, now)
	entries, err := m.fetchAll(ctx, b, winners)
	if err != nil {
		// Nothing is served: the leases just written would only keep a
		// successor from retiring these generations.
		var claimed []Generation
		for _, w := range winners {
			if !w.Updated.IsZero() {
				claimed = append(claimed, w)
			}
		}
		m.release(b, claimed)
		return err
	}
	maps.Copy(entries, inherited)

	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries = entries
	now = m.clock.Now()
	for _, g := range gens {
		if g.ServerID == m.serverID {
			m.known[g.Ref] = true
			if now.Sub(g.Created) < guardWindow {
				m.guard.record(g.KeyID, g.Created)
			}
		}
	}
	m.leftovers = losers
	for _, e := range entries {
		m.log.Info("Serving key", "inherited", e.inherited, "key_id", e.gen.KeyID, "ref", e.gen.Ref, "version", e.gen.Version, "type", e.pub.Type.String(), "fingerprint", e.pub.Fingerprint)
	}
	for _, g := range losers {
		m.log.Info("Found superseded key generation; it will be retired", "key_id", g.KeyID, "ref", g.Ref)
	}
	m.log.Debug("Loaded keys", "served", len(entries), "superseded", len(losers), "listed", len(gens), "holder", m.holder)
	return nil
}

// claimAll records this process's lease on the generations it adopts, so
// that a live process that made them (another one using this server ID by
// mistake) never retires what this one serves. A claim that fails is logged
// and retried by the first liveness pass: the generation's Updated is
// zeroed, which makes it due. Claims get half of what is left of ctx's
// time, so that a cloud refusing them leaves the fetches time to answer.
func (m *Manager) claimAll(ctx context.Context, b Backend, gens []Generation, now time.Time) []Generation {
	m.mu.RLock()
	ttl := m.schedule.leaseTTL()
	m.mu.RUnlock()
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(d)/2))
		defer cancel()
	}
	out := make([]Generation, len(gens))
	inParallel(len(gens), func(i int) {
		g := gens[i]
		claimed, err := b.KeepAlive(ctx, withLease(g, m.holder, now, ttl))
		if err != nil || claimed.Ref != g.Ref || claimed.KeyID != g.KeyID {
			m.log.Warn("Could not record this process's lease on an adopted key; the first liveness pass tries again", "key_id", g.KeyID, "ref", g.Ref, "error", err)
			g.Updated = time.Time{}
			out[i] = g
			return
		}
		out[i] = claimed
	})
	return out
}

// releaseBudget bounds the lease releases of a stop (or the call budget,
// if shorter): a stop must not hang on a cloud that does not answer.
const releaseBudget = 5 * time.Second

// release removes this process's lease from gens, so that a successor
// started after a clean stop may retire them as soon as it supersedes them.
// It is best effort: a lease left behind only delays that retirement until
// the lease ends.
func (m *Manager) release(b Backend, gens []Generation) {
	if len(gens) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(releaseBudget, m.budget))
	defer cancel()
	var released atomic.Int64
	inParallel(len(gens), func(i int) {
		g := gens[i]
		fresh, err := b.Refresh(ctx, g)
		if err == nil {
			fresh.Leases = slices.DeleteFunc(slices.Clone(fresh.Leases), func(l Lease) bool { return l.Holder == m.holder || l.Ref != g.Ref })
			fresh.Public, fresh.Version, fresh.Algorithm, fresh.Type = g.Public, g.Version, g.Algorithm, g.Type
			_, err = b.KeepAlive(ctx, fresh)
		}
		if err != nil {
			m.log.Debug("Could not release this process's lease on a key; it ends on its own", "key_id", g.KeyID, "ref", g.Ref, "error", err)
			return
		}
		released.Add(1)
	})
	m.log.Debug("Released this process's leases", "released", released.Load(), "keys", len(gens), "holder", m.holder)
}

// inParallel runs f(0) to f(n-1), at most fetchParallelism at a time, and
// returns when all have.
func inParallel(n int, f func(i int)) {
	sem := make(chan struct{}, fetchParallelism)
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

// fetchAll fetches the public keys of gens with bounded parallelism.
func (m *Manager) fetchAll(ctx context.Context, b Backend, gens []Generation) (map[string]*entry, error) {
	entries := make(map[string]*entry, len(gens))
	var mu sync.Mutex
	var firstErr error
	inParallel(len(gens), func(i int) {
		g := gens[i]
		e, err := m.newEntry(ctx, b, g)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		entries[g.KeyID] = e
	})
	return entries, firstErr
}

// newEntry builds the served entry for g, fetching its public key if needed.
func (m *Manager) newEntry(ctx context.Context, b Backend, g Generation) (*entry, error) {
	if g.Public == nil {
		fetched, err := b.Fetch(ctx, g)
		if err != nil {
			return nil, wrap(err, "key %s: fetching the public key of %s", g.KeyID, g.Ref)
		}
		if fetched.Disabled {
			return nil, Errorf(codes.FailedPrecondition, "key %s: generation %s is disabled in the cloud; enable it, or delete it so that SPIRE prepares a new key", g.KeyID, fetched.Ref)
		}
		if fetched.Public == nil || fetched.KeyID != g.KeyID {
			return nil, Errorf(codes.Internal, "key %s: the backend fetched %s without a public key or for another key ID", g.KeyID, g.Ref)
		}
		g = fetched
	}
	public := g.Public
	t, err := KeyTypeOf(public)
	if err != nil {
		return nil, Errorf(codes.Internal, "key %s: generation %s: %v", g.KeyID, g.Ref, err)
	}
	if g.Type != KeyTypeUnspecified && g.Type != t {
		return nil, Errorf(codes.Internal, "key %s: generation %s is listed as %v but its public key is %v", g.KeyID, g.Ref, g.Type, t)
	}
	der, err := x509.MarshalPKIXPublicKey(public)
	if err != nil {
		return nil, Errorf(codes.Internal, "key %s: generation %s: encoding the public key: %v", g.KeyID, g.Ref, err)
	}
	g.Type = t
	g.Public = public
	return &entry{
		gen:     g,
		public:  public,
		pub:     PublicKey{ID: g.KeyID, Type: t, PKIX: der, Fingerprint: Fingerprint(der)},
		signing: new(atomic.Int64),
	}, nil
}

// sortNewestFirst orders generations newest first; equal creation times are
// ordered by reference so that every server decides the same way.
func sortNewestFirst(gens []Generation) {
	sort.SliceStable(gens, func(i, j int) bool {
		if !gens[i].Created.Equal(gens[j].Created) {
			return gens[i].Created.After(gens[j].Created)
		}
		return gens[i].Ref > gens[j].Ref
	})
}

// GenerateKey creates a new generation for id and makes it the one served.
// The previous generation keeps signing until the new one is ready, and is
// retired in the background afterwards.
func (m *Manager) GenerateKey(ctx context.Context, id string, t KeyType) (PublicKey, error) {
	if id == "" {
		return PublicKey{}, Errorf(codes.InvalidArgument, "key ID is empty")
	}
	switch t {
	case ECP256, ECP384, RSA2048, RSA4096:
	default:
		return PublicKey{}, Errorf(codes.InvalidArgument, "key %s: unsupported key type %v", id, t)
	}
	if err := m.guard.take(id, m.clock.Now()); err != nil {
		m.log.Error("Key creation refused by the rate guard", "key_id", id, "error", err)
		m.metrics.IncrCounter([]string{"kmskeeper", "keys", "create_refused"}, 1, Label{"key_id", id})
		return PublicKey{}, err
	}

	m.mu.Lock()
	m.inFlight[id]++
	b := m.backend
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.inFlight[id]--
		if m.inFlight[id] == 0 {
			delete(m.inFlight, id)
		}
		m.mu.Unlock()
	}()

	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	start := time.Now()
	m.mu.RLock()
	from := m.cloudNow()
	m.mu.RUnlock()
	g, err := b.Create(cctx, id, t, Lease{Holder: m.holder, Renewed: from.Truncate(time.Millisecond)})
	if err != nil {
		m.noteFailedCreate(id, from)
		m.metrics.IncrCounter([]string{"kmskeeper", "keys", "create_errors"}, 1, Label{"code", Code(err).String()})
		return PublicKey{}, wrap(err, "key %s: creating a %v key", id, t)
	}
	m.observe(g)
	if g.KeyID != id {
		return PublicKey{}, Errorf(codes.Internal, "key %s: the backend created a key for %q", id, g.KeyID)
	}
	e, err := m.newEntry(cctx, b, g)
	if err != nil {
		return PublicKey{}, err
	}
	if e.pub.Type != t {
		return PublicKey{}, Errorf(codes.Internal, "key %s: asked for %v, the backend created %v", id, t, e.pub.Type)
	}

	m.mu.Lock()
	old := m.entries[id]
	m.entries[id] = e
	m.known[g.Ref] = true
	m.created[g.Ref] = true
	m.noteMigrationProgress(old)
	m.mu.Unlock()

	m.metrics.IncrCounter([]string{"kmskeeper", "keys", "created"}, 1, Label{"key_type", t.String()})
	m.metrics.MeasureSince([]string{"kmskeeper", "keys", "create_latency"}, start, Label{"key_type", t.String()})
	m.log.Info("Generated key", "key_id", id, "ref", g.Ref, "version", g.Version, "type", t.String(), "fingerprint", e.pub.Fingerprint)
	if old != nil && !old.inherited && old.gen.Ref != g.Ref {
		m.retireAsync(old, e.gen)
	}
	return e.pub, nil
}

// retireAsync retires a superseded entry in the background, once the
// signatures still in flight with it are done (no new one can start: the entry
// is no longer served). If retiring fails, or the process dies first, the
// cleanup pass finds the generation again by listing.
func (m *Manager) retireAsync(old *entry, newer Generation) {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		ctx, cancel := m.backgroundCtx()
		defer cancel()
		wait := time.NewTimer(m.budget)
		defer wait.Stop()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for old.signing.Load() > 0 {
			select {
			case <-ctx.Done():
				return
			case <-wait.C:
				old.signing.Store(0) // in-flight calls are past their budget
			case <-tick.C:
			}
		}
		if m.heldElsewhere(ctx, old.gen, newer) {
			return
		}
		m.retire(ctx, old.gen, string(StateSuperseded))
	}()
}

// heldElsewhere reads the leases of a generation this process no longer
// serves, unless the creation of newer (its successor) already read them,
// and reports whether another live process holds it. When the leases cannot
// be read it answers true: the cleanup pass decides later.
func (m *Manager) heldElsewhere(ctx context.Context, g, newer Generation) bool {
	b := m.currentBackend()
	fresh, err := g, error(nil)
	if s, ok := b.(SiblingLeases); ok && s.LeasesCoverKeyID() {
		fresh.Leases = newer.Leases
	} else {
		cctx, cancel := m.callCtx(ctx)
		fresh, err = b.Refresh(cctx, g)
		cancel()
	}
	if err != nil {
		m.log.Warn("Could not read the leases of a superseded key generation; the next cleanup pass retires it if no other process holds it", "key_id", g.KeyID, "ref", g.Ref, "error", err)
		return true
	}
	m.mu.RLock()
	now, started := m.cloudNow(), m.startedAt
	ttl := m.schedule.leaseTTL()
	m.mu.RUnlock()
	m.noteDuplicates(started, fresh.Leases)
	check := holdCheck{groups: map[string][]Generation{g.KeyID: {fresh}}, self: m.holder, now: now, ttl: ttl}
	if l, held := check.blocked(fresh); held {
		m.log.Info("Keeping a superseded key generation: another process holds a lease on it; a cleanup pass retires it once that process moves on or its lease ends", "key_id", g.KeyID, "ref", g.Ref, "holder", l.Holder, "lease_renewed", l.Renewed.UTC().Format(time.RFC3339))
		return true
	}
	return false
}

// noteDuplicates reports, once per holder, the leases another process wrote
// on this server's generations after this process started (at started, in
// the cloud's time): two processes are then serving with one server ID.
func (m *Manager) noteDuplicates(started time.Time, leases []Lease) {
	if started.IsZero() {
		return
	}
	m.dupMu.Lock()
	defer m.dupMu.Unlock()
	for _, l := range leases {
		if l.Holder == m.holder || m.duplicates[l.Holder] || !l.Renewed.After(started.Add(duplicateMargin)) {
			continue
		}
		m.duplicates[l.Holder] = true
		m.log.Error("Another process is serving keys with this server's ID: it recorded a lease on one of them after this process started. Two SPIRE servers use the same key_identifier_value or identifier file; neither retires a key the other holds, but each rotation leaves keys behind and their CAs diverge. Give every server its own identifier",
			"server_id", m.serverID, "holder", m.holder, "other_holder", l.Holder, "ref", l.Ref, "lease_renewed", l.Renewed.UTC().Format(time.RFC3339))
		m.metrics.IncrCounter([]string{"kmskeeper", "keys", "conflicts"}, 1)
	}
}

func (m *Manager) retire(ctx context.Context, g Generation, why string) error {
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	if err := m.currentBackend().Retire(cctx, g); err != nil {
		m.log.Warn("Could not retire key generation; the next cleanup pass will try again", "key_id", g.KeyID, "ref", g.Ref, "reason", why, "error", err)
		return wrap(err, "key %s: retiring %s", g.KeyID, g.Ref)
	}
	m.metrics.IncrCounter([]string{"kmskeeper", "keys", "retired"}, 1, Label{"reason", why})
	m.log.Info("Retired key generation", "key_id", g.KeyID, "ref", g.Ref, "server_id", g.ServerID, "reason", why)
	return nil
}

// backgroundCtx is the context of background work: cancelled by Close.
func (m *Manager) backgroundCtx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (m *Manager) lookup(id string) (*entry, error) {
	m.mu.RLock()
	e := m.entries[id]
	m.mu.RUnlock()
	return e, notFound(e, id)
}

// acquire returns the entry served under id, counted as signing until the
// returned release is called.
func (m *Manager) acquire(id string) (*entry, func(), error) {
	m.mu.RLock()
	e := m.entries[id]
	if e != nil {
		e.signing.Add(1)
	}
	m.mu.RUnlock()
	if e == nil {
		return nil, nil, notFound(e, id)
	}
	return e, func() { e.signing.Add(-1) }, nil
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
	e, release, err := m.acquire(id)
	if err != nil {
		return nil, "", err
	}
	defer release()
	bopts, err := normalizeOpts(e.pub.Type, digest, opts)
	if err != nil {
		return nil, "", wrap(err, "key %s", id)
	}
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	if e.inherited {
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
	m.metrics.MeasureSince([]string{"kmskeeper", "sign", "latency"}, start, Label{"key_type", e.pub.Type.String()})
	return sig, e.pub.Fingerprint, nil
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
	select {
	case m.resched <- struct{}{}: // a shorter interval applies at once
	default:
	}
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

// Close stops background work, waits for it, and closes the backend.
func (m *Manager) Close() error {
	first := false
	m.stopOnce.Do(func() { close(m.stop); first = true })
	m.bg.Wait()
	if first {
		m.mu.RLock()
		var served []Generation
		for _, e := range m.entries {
			if !e.inherited {
				served = append(served, e.gen)
			}
		}
		b := m.backend
		m.mu.RUnlock()
		m.release(b, served)
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
	return fmt.Sprintf("keymanager.Manager(server=%s)", m.serverID)
}

type nopMetrics struct{}

func (nopMetrics) IncrCounter([]string, float32, ...Label)    {}
func (nopMetrics) MeasureSince([]string, time.Time, ...Label) {}
