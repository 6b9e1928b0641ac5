package engine

import (
	"context"
	"crypto/x509"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
)

// Load lists the backend once, adopts the newest committed generation of
// each of this server's key IDs, records this process's lease on each (a
// key is never served before its lease is in the cloud) and fetches their
// public keys. What the listing shows superseded is retired by the
// background work once Start is called and it has settled.
func (m *Manager) Load(ctx context.Context) error {
	ctx, cancel := m.callCtx(ctx)
	defer cancel()
	b := m.currentBackend()
	gens, err := b.ListGenerations(ctx)
	if err != nil {
		return wrap(err, "loading keys: listing the backend")
	}
	now := m.synced(b, gens...)
	m.mu.Lock()
	m.startedAt = now
	sched := m.schedule
	m.mu.Unlock()

	groups := keyGroups(gens, m.serverID)
	var winners []Generation
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		w, ok := adoptable(groups[id])
		if !ok {
			m.log.Info("No committed generation of this key: its only generations were left by creations that failed; SPIRE prepares a new key", "key_id", id)
			continue
		}
		if w.Disabled {
			return Errorf(codes.FailedPrecondition, "key %s: its current generation %s is disabled in the cloud; enable it, or delete it so that SPIRE prepares a new key", w.KeyID, w.Ref)
		}
		if age := now.Sub(lastWritten(w)); age > sched.StaleAfter-adoptMargin {
			m.log.Warn("Not adopting a key that was not kept alive for too long: other servers may be retiring it as abandoned; SPIRE prepares a new key", "key_id", w.KeyID, "ref", w.Ref, "last_written", lastWritten(w).UTC().Format(time.RFC3339))
			continue
		}
		winners = append(winners, w)
	}
	// A migration that must be refused is refused before anything is
	// written to the cloud.
	var fromPredecessor map[string]*entry
	if m.predecessor != nil {
		if fromPredecessor, err = m.loadPredecessor(ctx, winners); err != nil {
			return err
		}
	}
	claimed, err := m.claimAll(ctx, b, winners)
	if err != nil {
		return err
	}
	entries, err := m.fetchAll(ctx, b, claimed)
	if err != nil {
		// Nothing is served: the leases just written would only keep a
		// successor from retiring these generations.
		m.release(b, claimed)
		return err
	}
	maps.Copy(entries, fromPredecessor)

	m.mu.Lock()
	m.entries = entries
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		m.seedGuard(id, groups[id], now)
	}
	for _, g := range claimed {
		m.checkLater(g)
	}
	var leftovers int
	for _, a := range Decide(gens, m.facts(now)) {
		if a.ServerID == m.serverID && (a.Retire || a.State == StateSettling) {
			m.addTask(&task{kind: taskRetire, gen: a.Generation, siblings: groups[a.KeyID], due: m.clock.Now()})
			leftovers++
		}
		if a.State == StateHeld {
			m.log.Info("Keeping a superseded key generation: another process holds a lease on it", "key_id", a.KeyID, "ref", a.Ref, "holder", a.HeldBy.Holder, "lease_renewed", a.HeldBy.Renewed.UTC().Format(time.RFC3339))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(entries)) {
		e := entries[id]
		m.log.Info("Serving key", "from_predecessor", e.fromPredecessor, "key_id", e.gen.KeyID, "ref", e.gen.Ref, "version", e.gen.Version, "type", e.pub.Type.String(), "fingerprint", e.pub.Fingerprint)
	}
	m.mu.Unlock()
	m.log.Debug("Loaded keys", "served", len(entries), "superseded", leftovers, "listed", len(gens), "holder", m.holder, "cloud_offset", m.cloud.Now().Sub(m.clock.Now()).String())
	return nil
}

// seedGuard counts the creations of key id within the last hour from what
// the listing shows. The caller holds m.mu.
func (m *Manager) seedGuard(id string, group []Generation, now time.Time) {
	n := 0
	var newest Generation
	for _, g := range group {
		if now.Sub(g.Created) < guardWindow {
			n++
		}
		if newest.Ref == "" || newerThan(g, newest) {
			newest = g
		}
	}
	if now.Sub(newest.Created) < guardWindow {
		n = max(n, newest.RecentCreations)
	}
	if n > 0 {
		m.guard.seed(id, n, newest.Created)
	}
}

// ownRenewed returns when this process's lease on g was renewed, or the zero
// time.
func ownRenewed(g Generation, self string) time.Time {
	l, _ := ownLease(g, self)
	return l.Renewed
}

// claimAll records this process's lease on the generations it adopts. A
// generation is served only once its lease is recorded: another process
// using this server ID by mistake, or `gc`, never retires what this one
// serves. If a claim fails, the claims made are released and Load fails.
func (m *Manager) claimAll(ctx context.Context, b Backend, gens []Generation) ([]Generation, error) {
	out := make([]Generation, len(gens))
	errs := make([]error, len(gens))
	m.inParallel(len(gens), func(i int) {
		g := gens[i]
		claimed, err := m.writeLease(ctx, b, g)
		if err == nil && (claimed.Ref != g.Ref || claimed.KeyID != g.KeyID) {
			err = Errorf(codes.Internal, "the backend answered for %s", claimed.Ref)
		}
		out[i], errs[i] = claimed, err
	})
	var done []Generation
	var firstErr error
	for i, err := range errs {
		if err != nil {
			if firstErr == nil {
				firstErr = wrap(err, "key %s: recording this process's lease on %s before serving it", gens[i].KeyID, gens[i].Ref)
			}
			continue
		}
		done = append(done, out[i])
	}
	if firstErr != nil {
		m.release(b, done)
		return nil, firstErr
	}
	return out, nil
}

// fetchAll fetches the public keys of gens with bounded parallelism.
func (m *Manager) fetchAll(ctx context.Context, b Backend, gens []Generation) (map[string]*entry, error) {
	entries := make(map[string]*entry, len(gens))
	var mu sync.Mutex
	var firstErr error
	m.inParallel(len(gens), func(i int) {
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
