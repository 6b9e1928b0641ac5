package keymanager

import (
	"context"
	"time"
)

// State says what a listed generation is to this server.
type State string

// The states of a listed generation.
const (
	// StateInUse is a generation this server serves.
	StateInUse State = "in use"
	// StateSuperseded is an older generation of one of this server's keys,
	// or one that a failed GenerateKey of this process left in the cloud
	// (the cloud made it, but the answer was lost or came too late).
	StateSuperseded State = "superseded"
	// StateCreating is this server's generation whose GenerateKey is still
	// running.
	StateCreating State = "creating"
	// StateConflict is a generation carrying this server's ID that this
	// process neither created nor found at load, nor could have made in a
	// creation that failed: another process uses the same server ID. It is
	// never retired.
	StateConflict State = "conflict"
	// StateForeign is another server's generation that is still kept alive.
	StateForeign State = "foreign"
	// StateStale is another server's generation not kept alive for longer
	// than the stale period: that server is gone.
	StateStale State = "stale"
	// StateHeld is a generation of this server that would be retired, but
	// that another process holds a live lease on: a process that started
	// after a crash of this one's predecessor (until the predecessor's
	// lease ends), or another process wrongly using this server ID.
	StateHeld State = "held"
)

// Assessment is one listed generation and what cleanup does with it.
type Assessment struct {
	Generation
	State  State
	Retire bool
	// HeldBy is the lease that keeps a StateHeld generation.
	HeldBy Lease
}

// observe notes times the cloud reported (creation times, which the cloud
// sets), so that cloudNow never runs behind the cloud's clock.
func (m *Manager) observe(gens ...Generation) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range gens {
		if off := g.Created.Sub(now); off > m.cloudOffset {
			m.cloudOffset = off
		}
	}
}

// cloudNow estimates the cloud's current time: the local clock, moved
// forward if the cloud has reported creation times later than it. A local
// clock running behind then cannot make keys look fresher than they are.
// The caller holds m.mu.
func (m *Manager) cloudNow() time.Time {
	return m.clock.Now().Add(m.cloudOffset)
}

// Assess lists the backend and says, for each generation, what it is and
// whether cleanup retires it.
func (m *Manager) Assess(ctx context.Context) ([]Assessment, error) {
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	gens, err := m.currentBackend().ListGenerations(cctx)
	if err != nil {
		return nil, wrap(err, "cleanup: listing the backend")
	}
	m.observe(gens...)

	m.mu.RLock()
	now, started := m.cloudNow(), m.startedAt
	stale := m.schedule.StaleAfter
	check := holdCheck{groups: keyGroups(gens, m.serverID), self: m.holder, mine: func(ref string) bool { return m.created[ref] }, now: now, ttl: m.schedule.leaseTTL()}
	out := make([]Assessment, 0, len(gens))
	var own []Lease // leases on this server's generations, for noteDuplicates
	for _, g := range gens {
		a := Assessment{Generation: g}
		switch {
		case g.ServerID != m.serverID:
			if now.Sub(g.Updated) > stale {
				a.State, a.Retire = StateStale, true
			} else {
				a.State = StateForeign
			}
		case m.entries[g.KeyID] != nil && m.entries[g.KeyID].gen.Ref == g.Ref:
			a.State = StateInUse
		case m.known[g.Ref]:
			a.State, a.Retire = StateSuperseded, true
		case m.inFlight[g.KeyID] > 0:
			a.State = StateCreating
		case m.leftByFailedCreate(g):
			// Never served: the creation that made it failed before
			// SPIRE got the key.
			a.State, a.Retire = StateSuperseded, true
		default:
			a.State = StateConflict
		}
		if g.ServerID == m.serverID {
			own = append(own, g.Leases...)
			if a.Retire {
				if l, held := check.blocked(g); held {
					a.State, a.Retire, a.HeldBy = StateHeld, false, l
				}
			}
		}
		out = append(out, a)
	}
	m.mu.RUnlock()
	m.noteDuplicates(started, own)
	return out, nil
}

// Plan assesses a listing without a running Manager, as a restarted server
// would: the newest generation of each of serverID's key IDs is in use, its
// other generations are superseded unless a process holds a live lease on
// them (schedule gives the lease period), and other servers' generations are
// stale once their Updated time is older than schedule.StaleAfter. Zero
// schedule fields take the defaults. now is the local time; it is moved
// forward to the newest creation time listed, as the engine does. Operator
// tools use it.
func Plan(gens []Generation, serverID string, now time.Time, schedule Schedule) []Assessment {
	schedule = schedule.withDefaults()
	staleAfter := schedule.StaleAfter
	newest := make(map[string]Generation)
	for _, g := range gens {
		if g.Created.After(now) {
			now = g.Created
		}
		if g.ServerID != serverID {
			continue
		}
		cur, ok := newest[g.KeyID]
		if !ok || g.Created.After(cur.Created) || (g.Created.Equal(cur.Created) && g.Ref > cur.Ref) {
			newest[g.KeyID] = g
		}
	}
	out := make([]Assessment, 0, len(gens))
	for _, g := range gens {
		a := Assessment{Generation: g}
		switch {
		case g.ServerID != serverID && now.Sub(g.Updated) > staleAfter:
			a.State, a.Retire = StateStale, true
		case g.ServerID != serverID:
			a.State = StateForeign
		case newest[g.KeyID].Ref == g.Ref:
			a.State = StateInUse
		default:
			a.State, a.Retire = StateSuperseded, true
		}
		out = append(out, a)
	}
	check := holdCheck{groups: keyGroups(gens, serverID), now: now, ttl: schedule.leaseTTL()}
	for i, a := range out {
		if a.Retire && a.ServerID == serverID {
			if l, held := check.blocked(a.Generation); held {
				out[i].State, out[i].Retire, out[i].HeldBy = StateHeld, false, l
			}
		}
	}
	return out
}

// Cleanup assesses the backend and, when apply is true, retires what the
// assessment marks. It returns the assessment and the first retirement error.
func (m *Manager) Cleanup(ctx context.Context, apply bool) ([]Assessment, error) {
	as, err := m.Assess(ctx)
	if err != nil {
		return nil, err
	}
	var firstErr error
	for _, a := range as {
		if a.State == StateHeld {
			m.log.Info("Keeping a superseded key generation: another process holds a lease on it", "key_id", a.KeyID, "ref", a.Ref, "holder", a.HeldBy.Holder, "lease_renewed", a.HeldBy.Renewed.UTC().Format(time.RFC3339))
		}
		if a.State == StateConflict {
			m.log.Error("A key carries this server's ID but was not created by this process: another SPIRE server uses the same key_identifier_value or identifier file. It is left alone; give every server its own identifier",
				"key_id", a.KeyID, "ref", a.Ref, "server_id", m.serverID)
			m.metrics.IncrCounter([]string{"kmskeeper", "keys", "conflicts"}, 1)
		}
		if !a.Retire || !apply {
			continue
		}
		if err := m.retire(ctx, a.Generation, string(a.State)); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return as, firstErr
}

// KeepAlive refreshes the served generations whose Updated time is older
// than the keep-alive age, so other servers' cleanup never takes them for
// abandoned. Keys that SPIRE rotates more often than that cost no call.
func (m *Manager) KeepAlive(ctx context.Context) error {
	m.mu.RLock()
	var due []Generation
	now := m.cloudNow()
	for _, e := range m.entries {
		if !e.inherited && now.Sub(e.gen.Updated) > m.schedule.KeepAliveAge {
			due = append(due, e.gen)
		}
	}
	b := m.backend
	offset := m.cloudOffset
	m.mu.RUnlock()
	m.log.Debug("Liveness pass", "due", len(due), "cloud_offset", offset.String())

	var firstErr error
	for _, g := range due {
		cctx, cancel := m.callCtx(ctx)
		ng, err := m.keepAlive(cctx, b, g)
		cancel()
		if err != nil {
			m.log.Warn("Could not keep key alive; will retry at the next liveness pass", "key_id", g.KeyID, "ref", g.Ref, "error", err)
			if firstErr == nil {
				firstErr = wrap(err, "key %s: keeping %s alive", g.KeyID, g.Ref)
			}
			continue
		}
		m.mu.Lock()
		if e := m.entries[g.KeyID]; e != nil && e.gen.Ref == g.Ref {
			ne := *e
			ne.gen.Updated, ne.gen.Leases, ne.gen.Labels = ng.Updated, ng.Leases, ng.Labels
			m.entries[g.KeyID] = &ne
		}
		m.mu.Unlock()
		m.metrics.IncrCounter([]string{"kmskeeper", "keys", "kept_alive"}, 1)
	}
	return firstErr
}

// keepAlive reads g's leases again and writes them back with this process's
// renewed: a lease another process recorded since g was last read is kept.
func (m *Manager) keepAlive(ctx context.Context, b Backend, g Generation) (Generation, error) {
	fresh, err := b.Refresh(ctx, g)
	if err != nil {
		return g, err
	}
	fresh.Public, fresh.Version, fresh.Algorithm, fresh.Type = g.Public, g.Version, g.Algorithm, g.Type
	m.mu.RLock()
	now, started := m.cloudNow(), m.startedAt
	ttl := m.schedule.leaseTTL()
	m.mu.RUnlock()
	m.noteDuplicates(started, fresh.Leases)
	ng, err := b.KeepAlive(ctx, withLease(fresh, m.holder, now, ttl))
	if err != nil {
		return g, err
	}
	return ng, nil
}

// Start runs the background passes until Close: first the retirement of
// generations superseded before this start, then liveness and cleanup on the
// schedule.
func (m *Manager) Start() {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return
	}
	m.started = true
	leftovers := m.leftovers
	m.leftovers = nil
	m.mu.Unlock()

	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		ctx, cancel := m.backgroundCtx()
		defer cancel()
		for _, g := range leftovers {
			m.retire(ctx, g, string(StateSuperseded))
		}
		m.loop(ctx)
	}()
}

// loop runs the liveness and cleanup passes when each falls due.
func (m *Manager) loop(ctx context.Context) {
	m.mu.RLock()
	s := m.schedule
	m.mu.RUnlock()
	nextLive := m.clock.Now().Add(s.LivenessInterval)
	nextClean := m.clock.Now().Add(s.CleanupInterval)
	for {
		wait := minTime(nextLive, nextClean).Sub(m.clock.Now())
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(max(wait, 0)):
		case <-m.resched:
		}
		now := m.clock.Now()
		m.mu.RLock()
		s = m.schedule
		m.mu.RUnlock()
		if !now.Before(nextLive) {
			err := m.KeepAlive(ctx)
			if err != nil {
				m.metrics.IncrCounter([]string{"kmskeeper", "liveness", "errors"}, 1)
			}
			m.log.Debug("Liveness pass done", "ok", err == nil)
			nextLive = now.Add(s.LivenessInterval)
		}
		if !now.Before(nextClean) {
			as, err := m.Cleanup(ctx, true)
			if err != nil {
				m.log.Warn("Cleanup pass failed; it runs again at the next interval", "error", err)
				m.metrics.IncrCounter([]string{"kmskeeper", "cleanup", "errors"}, 1)
			}
			retire := 0
			for _, a := range as {
				if a.Retire {
					retire++
				}
			}
			m.log.Debug("Cleanup pass done", "ok", err == nil, "listed", len(as), "to_retire", retire)
			nextClean = now.Add(s.CleanupInterval)
		}
		// A shorter interval set by Reconfigure takes effect at once.
		nextLive = minTime(nextLive, now.Add(s.LivenessInterval))
		nextClean = minTime(nextClean, now.Add(s.CleanupInterval))
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
