package engine

import (
	"context"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// GenerateKey creates a new generation for id and makes it the one served.
// The previous generation keeps signing until the new one is ready and
// committed, and is retired in the background once it has settled.
//
// Concurrent calls for one ID are safe: the newest creation (by the cloud's
// creation time, then reference, the order a restart uses) is served, and a
// call whose creation lost to a newer one answers with the newer key.
func (m *Manager) GenerateKey(ctx context.Context, id string, t KeyType) (PublicKey, error) {
	if id == "" {
		return PublicKey{}, Errorf(codes.InvalidArgument, "key ID is empty")
	}
	switch t {
	case ECP256, ECP384, RSA2048, RSA4096:
	default:
		return PublicKey{}, Errorf(codes.InvalidArgument, "key %s: unsupported key type %v", id, t)
	}
	select {
	case <-m.stop:
		// A stopping process creates nothing: its successor, which may
		// already be listing the cloud, would not count the creation.
		return PublicKey{}, Errorf(codes.Unavailable, "key %s: the plugin is stopping", id)
	default:
	}
	b := m.currentBackend()
	now := m.cloud.Now()
	if err := m.guard.take(id, now, m.budget); err != nil {
		m.log.Error("Key creation refused by the rate guard", "key_id", id, "error", err)
		m.metrics.IncrCounter([]string{"kmskeeper", "keys", "create_refused"}, 1, Label{"key_id", id})
		return PublicKey{}, err
	}

	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	start := time.Now()
	g, err := b.Create(cctx, CreateRequest{
		KeyID:           id,
		Type:            t,
		Lease:           Lease{Holder: m.holder, Renewed: now.Truncate(time.Millisecond), Pending: true},
		RecentCreations: m.guard.recent(id, now),
	})
	m.synced(b, g)
	if err != nil {
		m.metrics.IncrCounter([]string{"kmskeeper", "keys", "create_errors"}, 1, Label{"code", Code(err).String()})
		return PublicKey{}, wrap(err, "key %s: creating a %v key", id, t)
	}
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
	// Commit: from this write on, a server starting with this ID adopts
	// the generation. Until then its only lease is pending and nobody does.
	committed, err := m.commit(cctx, b, e.gen)
	if err != nil {
		return PublicKey{}, wrap(err, "key %s: committing the new generation %s", id, g.Ref)
	}
	ne := *e
	ne.gen = committed
	ne.gen.Public, ne.gen.Type = e.public, e.pub.Type
	e = &ne

	m.mu.Lock()
	winner, loser := e, m.entries[id]
	if loser != nil && !loser.fromPredecessor && newerThan(loser.gen, e.gen) {
		// A creation that started later answered first: the newest wins,
		// here as after a restart.
		winner, loser = loser, e
		m.log.Warn("Two key creations for one key ID overlapped; the newer key is served", "key_id", id, "served", winner.gen.Ref, "superseded", loser.gen.Ref)
	} else {
		m.entries[id] = e
		m.noteMigrationProgress(loser)
		m.checkLater(e.gen)
	}
	if loser != nil && !loser.fromPredecessor && loser.gen.Ref != winner.gen.Ref {
		m.supersede(loser, winner.gen)
	}
	m.mu.Unlock()

	m.metrics.IncrCounter([]string{"kmskeeper", "keys", "created"}, 1, Label{"key_type", t.String()})
	m.metrics.MeasureSince([]string{"kmskeeper", "keys", "create_latency"}, start, Label{"key_type", t.String()})
	m.log.Info("Generated key", "key_id", id, "ref", g.Ref, "version", g.Version, "type", t.String(), "fingerprint", e.pub.Fingerprint)
	return winner.pub, nil
}

// commit writes this process's committed lease on a generation it created.
// If the write's answer is lost, the record is read back: a commit that took
// effect is a commit.
func (m *Manager) commit(ctx context.Context, b Backend, g Generation) (Generation, error) {
	committed, err := m.writeLease(ctx, b, g)
	if err == nil {
		return committed, nil
	}
	fresh, rerr := b.Refresh(ctx, g)
	m.synced(b)
	if rerr == nil {
		if l, ok := ownLease(fresh, m.holder); ok && !l.Pending {
			return fresh, nil
		}
	}
	return g, err
}

// supersede stops serving e (already replaced or never swapped in) and
// schedules its retirement. The caller holds m.mu.
func (m *Manager) supersede(e *entry, newer Generation) {
	ne := *e
	ne.superseded = m.clock.Now()
	m.draining[e.gen.Ref] = &ne
	if t := m.tasks[e.gen.Ref]; t != nil && t.kind == taskCheckLease {
		delete(m.tasks, e.gen.Ref)
	}
	// The copy shares e's signing counter: signatures acquired before the
	// swap still count.
	m.addTask(&task{kind: taskRetire, gen: e.gen, siblings: []Generation{newer}, due: m.clock.Now()})
}

// taskKind says what a task does.
type taskKind int

const (
	// taskCheckLease reads this process's lease back after writing it.
	taskCheckLease taskKind = iota + 1
	// taskRetire retires a superseded generation once it has settled.
	taskRetire
)

// task is background work due at a time: at most one per generation.
type task struct {
	kind taskKind
	gen  Generation
	// siblings are the other generations of gen's key ID known when the
	// task was made (taskRetire): the settle rule needs the newer one.
	siblings []Generation
	// wrote is the renewal time of the lease this process wrote
	// (taskCheckLease).
	wrote time.Time
	due   time.Time // local clock
	// tries counts the retirements that failed; after maxTries the
	// cleanup pass takes over.
	tries int
}

// maxTries bounds the attempts of a retirement task.
const maxTries = 5

// addTask schedules t, replacing the task of the same generation. A lease
// check does not replace a retirement unless the generation is served: a
// cleanup pass that ran while this process was creating it found it
// pending and scheduled its retirement, which would only find it in use,
// and the lease written since must still be read back. The caller holds
// m.mu.
func (m *Manager) addTask(t *task) {
	if old := m.tasks[t.gen.Ref]; old != nil && old.kind == taskRetire && t.kind == taskCheckLease {
		if e := m.entries[t.gen.KeyID]; e == nil || e.fromPredecessor || e.gen.Ref != t.gen.Ref {
			return
		}
	}
	m.tasks[t.gen.Ref] = t
	m.poke()
}

// NextDue returns when the earliest background task falls due, or the zero
// time when none is scheduled.
func (m *Manager) NextDue() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var next time.Time
	for _, t := range m.tasks {
		if next.IsZero() || t.due.Before(next) {
			next = t.due
		}
	}
	return next
}

// RunDue runs the background tasks that are due: lease read-backs and the
// retirement of superseded generations. Start's loop calls it; tests and
// the simulation call it directly. Tasks run one at a time, in order of
// time and reference, so that a simulated run replays exactly.
func (m *Manager) RunDue(ctx context.Context) {
	m.mu.RLock()
	now := m.clock.Now()
	var due []*task
	for _, t := range m.tasks {
		if !t.due.After(now) {
			due = append(due, t)
		}
	}
	b := m.backend
	m.mu.RUnlock()
	slices.SortFunc(due, func(a, b *task) int {
		if c := a.due.Compare(b.due); c != 0 {
			return c
		}
		return strings.Compare(a.gen.Ref, b.gen.Ref)
	})
	for _, t := range due {
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		if m.tasks[t.gen.Ref] != t {
			m.mu.Unlock()
			continue // replaced meanwhile
		}
		delete(m.tasks, t.gen.Ref)
		m.mu.Unlock()
		switch t.kind {
		case taskCheckLease:
			m.runLeaseCheck(ctx, b, t)
		case taskRetire:
			m.runRetire(ctx, b, t)
		}
	}
}

// reschedule puts t back, due after d, unless another task for its
// generation was added meanwhile.
func (m *Manager) reschedule(t *task, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tasks[t.gen.Ref] == nil {
		t.due = m.clock.Now().Add(d)
		m.tasks[t.gen.Ref] = t
		m.poke()
	}
}

// runLeaseCheck reads back the lease of a generation this process still
// serves and writes it again if it was dropped.
func (m *Manager) runLeaseCheck(ctx context.Context, b Backend, t *task) {
	m.mu.RLock()
	e := m.entries[t.gen.KeyID]
	m.mu.RUnlock()
	if e == nil || e.fromPredecessor || e.gen.Ref != t.gen.Ref {
		return // no longer served
	}
	cctx, cancel := m.callCtx(ctx)
	ng, rewrote, err := m.checkLease(cctx, b, e.gen, t.wrote)
	cancel()
	if err != nil {
		m.log.Warn("Could not read back this process's lease on a key; trying again", "key_id", t.gen.KeyID, "ref", t.gen.Ref, "error", err)
		m.reschedule(t, leaseRetry)
		return
	}
	if !rewrote {
		return
	}
	m.replaceServed(e, ng)
	m.reschedule(&task{kind: taskCheckLease, gen: ng, wrote: ownRenewed(ng, m.holder)}, m.leaseCheckDelay())
}

// replaceServed stores e with its generation as the backend last returned
// it, if e is still the entry served under its key ID.
func (m *Manager) replaceServed(e *entry, g Generation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur := m.entries[e.gen.KeyID]; cur == e || (cur != nil && cur.gen.Ref == g.Ref) {
		ne := *cur
		g.Public, g.Type = cur.public, cur.pub.Type
		ne.gen = g
		m.entries[e.gen.KeyID] = &ne
	}
}

// runRetire retires a superseded generation if, read again, the rule still
// says so; one not yet settled is looked at again when it would be.
func (m *Manager) runRetire(ctx context.Context, b Backend, t *task) {
	m.mu.RLock()
	d := m.draining[t.gen.Ref]
	var siblings []Generation
	siblings = append(siblings, t.siblings...)
	if e := m.entries[t.gen.KeyID]; e != nil && !e.fromPredecessor {
		siblings = append(siblings, e.gen)
	}
	m.mu.RUnlock()
	if d != nil && d.signing.Load() > 0 && m.clock.Now().Sub(d.superseded) < m.budget {
		m.reschedule(t, time.Second) // a signature with it is in flight
		return
	}
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	now := m.synced(b)
	m.mu.RLock()
	f := m.facts(now)
	m.mu.RUnlock()
	a, err := Recheck(cctx, b, Assessment{Generation: t.gen}, append(siblings, t.gen), f)
	m.synced(b)
	if err != nil {
		m.log.Warn("Could not read a superseded key generation before retiring it; trying again", "key_id", t.gen.KeyID, "ref", t.gen.Ref, "error", err)
		if t.tries++; t.tries < maxTries {
			m.reschedule(t, leaseRetry)
			return
		}
		m.mu.Lock()
		delete(m.draining, t.gen.Ref) // the cleanup pass takes over
		m.mu.Unlock()
		return
	}
	switch {
	case a.Retire:
		if err := m.retire(cctx, b, a.Generation, string(a.State)); err != nil {
			if t.tries++; t.tries < maxTries {
				m.reschedule(t, leaseRetry)
				return
			}
		}
	case a.State == StateSettling || a.State == StateHeld:
		g := a.Generation
		if l, mine := ownLease(g, m.holder); mine && !l.Pending {
			// This process no longer serves it: it ends its own lease,
			// so that `gc`, `keys list` and a successor after a crash see
			// the generation settling rather than held. A concurrent
			// release by another holder, from a read older than this
			// write, can bring it back: the next look ends it again.
			m.endLease(cctx, b, g)
			g.Updated = m.cloud.Now()
		}
		if a.State == StateHeld {
			// Another holder may end its lease soon (it superseded the
			// generation too): look again once this one has settled, a
			// few times, then leave it to the cleanup passes.
			if t.tries++; t.tries < maxTries {
				m.log.Info("Keeping a superseded key generation: another process holds a lease on it", "key_id", a.KeyID, "ref", a.Ref, "holder", a.HeldBy.Holder, "lease_renewed", a.HeldBy.Renewed.UTC().Format(time.RFC3339))
				m.reschedule(t, m.settleWait(g, siblings, f))
				return
			}
			break
		}
		m.reschedule(t, m.settleWait(g, siblings, f))
		return
	}
	m.mu.Lock()
	delete(m.draining, t.gen.Ref)
	m.mu.Unlock()
}

// endLease removes this process's lease from g, as read just before.
func (m *Manager) endLease(ctx context.Context, b Backend, g Generation) {
	g.Leases = slices.DeleteFunc(slices.Clone(g.Leases), func(l Lease) bool { return l.Holder == m.holder || l.Ref != g.Ref })
	if _, err := b.KeepAlive(ctx, g); err != nil {
		m.log.Debug("Could not end this process's lease on a superseded key generation; it ends on its own", "key_id", g.KeyID, "ref", g.Ref, "error", err)
	}
	m.synced(b)
}

// settleWait estimates how long until g settles.
func (m *Manager) settleWait(g Generation, siblings []Generation, f Facts) time.Duration {
	wait := m.settle - f.Now.Sub(lastWritten(g))
	if pending(g) && newest(g, siblings) {
		// The newest pending generation is kept for the rate guard's hour.
		wait = max(wait, guardWindow-f.Now.Sub(g.Created))
	}
	if !pending(g) {
		newest := time.Duration(0)
		for _, o := range siblings {
			if o.Ref != g.Ref && newerThan(o, g) {
				newest = max(newest, m.settle-f.Now.Sub(o.Created))
			}
		}
		wait = max(wait, newest)
	}
	return max(wait, 0) + time.Second
}

// retire retires g and accounts for it.
func (m *Manager) retire(ctx context.Context, b Backend, g Generation, why string) error {
	if err := b.Retire(ctx, g); err != nil {
		m.log.Warn("Could not retire key generation; trying again later", "key_id", g.KeyID, "ref", g.Ref, "reason", why, "error", err)
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
