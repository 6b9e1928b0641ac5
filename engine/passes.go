package engine

import (
	"context"
	"maps"
	"slices"
	"time"
)

// Assess lists the backend and says, for each generation, what it is to this
// process and whether cleanup retires it (see Decide).
func (m *Manager) Assess(ctx context.Context) ([]Assessment, error) {
	as, _, err := m.assess(ctx)
	return as, err
}

func (m *Manager) assess(ctx context.Context) ([]Assessment, []Generation, error) {
	cctx, cancel := m.callCtx(ctx)
	defer cancel()
	b := m.currentBackend()
	gens, err := b.ListGenerations(cctx)
	if err != nil {
		return nil, nil, wrap(err, "cleanup: listing the backend")
	}
	now := m.synced(b, gens...)
	var own []Lease
	for _, g := range gens {
		if g.ServerID == m.serverID {
			own = append(own, g.Leases...)
		}
	}
	m.noteDuplicates(own)
	m.mu.RLock()
	as := Decide(gens, m.facts(now))
	m.mu.RUnlock()
	return as, gens, nil
}

// Cleanup assesses the backend and, when apply is true, retires what the
// assessment marks, each after a Recheck; generations still settling are
// scheduled for retirement once settled. It returns the assessment and the
// first retirement error.
func (m *Manager) Cleanup(ctx context.Context, apply bool) ([]Assessment, error) {
	as, gens, err := m.assess(ctx)
	if err != nil {
		return nil, err
	}
	var firstErr error
	b := m.currentBackend()
	groups := keyGroups(gens, m.serverID)
	for i, a := range as {
		if a.State == StateHeld {
			m.log.Info("Keeping a superseded key generation: another process holds a lease on it", "key_id", a.KeyID, "ref", a.Ref, "holder", a.HeldBy.Holder, "lease_renewed", a.HeldBy.Renewed.UTC().Format(time.RFC3339))
		}
		if !apply {
			continue
		}
		if l, mine := ownLease(a.Generation, m.holder); mine && !l.Pending && a.ServerID == m.serverID && (a.State == StateSettling || a.State == StateHeld) {
			// A lease of this process on a generation it does not serve
			// (a concurrent release brought it back): end it again.
			cctx, cancel := m.callCtx(ctx)
			if fresh, err := b.Refresh(cctx, a.Generation); err == nil {
				if l, mine := ownLease(fresh, m.holder); mine && !l.Pending {
					m.endLease(cctx, b, fresh)
				}
			}
			cancel()
		}
		if a.State == StateSettling {
			m.retireOnceSettled(a, groups[a.KeyID])
			continue
		}
		if !a.Retire {
			continue
		}
		cctx, cancel := m.callCtx(ctx)
		m.mu.RLock()
		f := m.facts(m.cloud.Now())
		m.mu.RUnlock()
		checked, err := Recheck(cctx, b, a, gens, f)
		m.synced(b)
		if err != nil {
			err = wrap(err, "key %s: reading %s again before retiring it", a.KeyID, a.Ref)
		} else if checked.Retire {
			err = m.retire(cctx, b, checked.Generation, string(checked.State)) // names the key
		}
		cancel()
		as[i] = checked
		if err == nil && checked.State == StateSettling {
			// The key was written to between the listing and the check
			// (a keep-alive of another generation of the same key): it
			// is retired once settled, not at the next pass, which the
			// next write could meet in the same way.
			m.retireOnceSettled(checked, groups[a.KeyID])
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return as, firstErr
}

// retireOnceSettled schedules the retirement of a generation that has not
// settled yet: the task waits for it to settle and decides again then.
func (m *Manager) retireOnceSettled(a Assessment, siblings []Generation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tasks[a.Ref] == nil {
		m.addTask(&task{kind: taskRetire, gen: a.Generation, siblings: siblings, due: m.clock.Now()})
	}
}

// KeepAlive renews the lease record of the served generations whose Updated
// time is older than the keep-alive age, so other servers' cleanup never
// takes them for abandoned and the leases never end. Keys that SPIRE rotates
// more often than that cost no call.
func (m *Manager) KeepAlive(ctx context.Context) error {
	now := m.cloud.Now()
	m.mu.RLock()
	var due []*entry
	for _, id := range slices.Sorted(maps.Keys(m.entries)) {
		e := m.entries[id]
		if !e.fromPredecessor && now.Sub(e.gen.Updated) > m.schedule.KeepAliveAge {
			due = append(due, e)
		}
	}
	b := m.backend
	m.mu.RUnlock()
	m.log.Debug("Liveness pass", "due", len(due), "cloud_offset", m.cloud.Now().Sub(m.clock.Now()).String())

	var firstErr error
	for _, e := range due {
		g := e.gen
		cctx, cancel := m.callCtx(ctx)
		ng, err := m.renewLease(cctx, b, g)
		cancel()
		if err != nil {
			m.log.Warn("Could not keep key alive; will retry soon", "key_id", g.KeyID, "ref", g.Ref, "error", err)
			if firstErr == nil {
				firstErr = wrap(err, "key %s: keeping %s alive", g.KeyID, g.Ref)
			}
			continue
		}
		m.replaceServed(e, ng)
		m.mu.Lock()
		m.checkLater(ng)
		m.mu.Unlock()
		m.metrics.IncrCounter([]string{"kmskeeper", "keys", "kept_alive"}, 1)
	}
	return firstErr
}

// livenessRetry is how soon a liveness pass that failed runs again (doubling
// up to the liveness interval): a lease must not end because one pass met a
// throttled cloud.
const livenessRetry = time.Minute

// Start runs the background work until Close: the tasks Load scheduled
// (retiring what it found superseded, reading back its leases), then the
// liveness and cleanup passes on the schedule, and every task as it falls
// due.
func (m *Manager) Start() {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return
	}
	m.started = true
	m.mu.Unlock()

	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		ctx, cancel := m.backgroundCtx()
		defer cancel()
		m.loop(ctx)
	}()
}

// loop runs the passes and the tasks when each falls due.
func (m *Manager) loop(ctx context.Context) {
	m.mu.RLock()
	s := m.schedule
	m.mu.RUnlock()
	nextLive := m.clock.Now().Add(s.LivenessInterval)
	nextClean := m.clock.Now().Add(s.CleanupInterval)
	liveBackoff := livenessRetry
	for {
		m.RunDue(ctx)
		next := minTime(nextLive, nextClean)
		if d := m.NextDue(); !d.IsZero() {
			next = minTime(next, d)
		}
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(max(next.Sub(m.clock.Now()), 0)):
		case <-m.wake:
		}
		now := m.clock.Now()
		m.mu.RLock()
		s = m.schedule
		m.mu.RUnlock()
		if !now.Before(nextLive) {
			err := m.KeepAlive(ctx)
			nextLive = now.Add(s.LivenessInterval)
			if err != nil {
				m.metrics.IncrCounter([]string{"kmskeeper", "liveness", "errors"}, 1)
				nextLive = now.Add(min(liveBackoff, s.LivenessInterval))
				liveBackoff *= 2
			} else {
				liveBackoff = livenessRetry
			}
			m.log.Debug("Liveness pass done", "ok", err == nil)
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
