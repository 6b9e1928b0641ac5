package engine

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// MaxLeases bounds the leases recorded on one generation (on one Cloud KMS
// CryptoKey), so that they fit the cloud's tag and label limits. The oldest
// go first: a process whose lease is pushed out restores it at its lease
// check.
const MaxLeases = 6

// duplicateMargin is how much later than this process's start another
// holder's lease must have been written for the two to be reported as
// running at once: it absorbs the difference between the processes' clocks.
const duplicateMargin = 5 * time.Minute

// leaseRetry is how soon a lease check or a retirement that could not read
// the cloud tries again.
const leaseRetry = 10 * time.Second

// MaxLivenessInterval is the longest liveness interval a process may run
// with (the configuration refuses longer ones): the keep-alive age.
const MaxLivenessInterval = DefaultKeepAliveAge

// leaseTTL is how long a lease counts after it was written: a process renews
// the leases of the generations it serves at least every KeepAliveAge plus
// one liveness interval; one more interval allows a failed pass. The reader
// cannot know the writer's interval, so it assumes the longest any process
// may run with (or its own, if longer).
func (s Schedule) leaseTTL() time.Duration {
	return s.KeepAliveAge + 2*max(s.LivenessInterval, MaxLivenessInterval)
}

// LeaseTTL is how long a lease keeps a generation from being retired after
// it was last written, under schedule s (zero fields take the defaults).
func LeaseTTL(s Schedule) time.Duration { return s.withDefaults().leaseTTL() }

// leaseCheckDelay is how long after writing a lease this process reads it
// back. Neither cloud updates tags or labels conditionally: a process that
// read the record before this write and writes after it drops the lease.
// Such a write ends within one budget of its read, so a read-back two
// budgets later sees any drop and writes the lease again.
func (m *Manager) leaseCheckDelay() time.Duration { return 2 * m.budget }

// newHolder returns a random holder ID: 8 characters among lowercase letters
// and digits, which every cloud accepts in a tag or label name.
func newHolder() string {
	var b [5]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// withLease returns g with the leases to record on it: the live leases of
// other processes on g (the newest MaxLeases-1), then this process's,
// written at now (committed unless pending).
func withLease(g Generation, self string, now time.Time, ttl time.Duration, pending bool) Generation {
	var others []Lease
	for _, l := range g.Leases {
		if l.Ref == g.Ref && l.Holder != self && (l.Pending || now.Sub(l.Renewed) <= ttl) {
			others = append(others, l)
		}
	}
	slices.SortFunc(others, func(a, b Lease) int { return b.Renewed.Compare(a.Renewed) })
	if len(others) > MaxLeases-1 {
		others = others[:MaxLeases-1]
	}
	g.Leases = append(others, Lease{Holder: self, Ref: g.Ref, Renewed: now.Truncate(time.Millisecond), Pending: pending})
	return g
}

// checkLater schedules the read-back of the lease this process just wrote
// on g. The caller holds m.mu.
func (m *Manager) checkLater(g Generation) {
	m.addTask(&task{kind: taskCheckLease, gen: g, wrote: ownRenewed(g, m.holder), due: m.clock.Now().Add(m.leaseCheckDelay())})
}

// ownLease returns this process's lease on g, if recorded.
func ownLease(g Generation, self string) (Lease, bool) {
	for _, l := range g.Leases {
		if l.Ref == g.Ref && l.Holder == self {
			return l, true
		}
	}
	return Lease{}, false
}

// writeLease records this process's committed lease on g, on the record as
// g holds it (the caller has just read it), and returns what the backend
// answered.
func (m *Manager) writeLease(ctx context.Context, b Backend, g Generation) (Generation, error) {
	m.mu.RLock()
	ttl := m.schedule.leaseTTL()
	m.mu.RUnlock()
	now := m.synced(b)
	ng, err := b.KeepAlive(ctx, withLease(g, m.holder, now, ttl, false))
	m.synced(b)
	return ng, err
}

// renewLease reads g's record again and writes it back with this process's
// lease renewed: a lease another process recorded since g was last read is
// kept.
func (m *Manager) renewLease(ctx context.Context, b Backend, g Generation) (Generation, error) {
	fresh, err := b.Refresh(ctx, g)
	if err != nil {
		return g, err
	}
	m.noteDuplicates(fresh.Leases)
	return m.writeLease(ctx, b, fresh)
}

// checkLease is a lease check: it reads g's record back and, if this
// process's lease is missing or older than the one it wrote (a concurrent
// rewrite dropped it), writes it again. It returns the generation as the
// cloud holds it and whether the lease had to be written again.
func (m *Manager) checkLease(ctx context.Context, b Backend, g Generation, wrote time.Time) (Generation, bool, error) {
	fresh, err := b.Refresh(ctx, g)
	m.synced(b)
	if err != nil {
		return g, false, err
	}
	m.noteDuplicates(fresh.Leases)
	if l, ok := ownLease(fresh, m.holder); ok && !l.Pending && !l.Renewed.Before(wrote.Truncate(time.Millisecond)) {
		return fresh, false, nil
	}
	m.log.Warn("This process's lease on a key was dropped by a concurrent update of its tags or labels; writing it again", "key_id", g.KeyID, "ref", g.Ref, "holder", m.holder)
	m.metrics.IncrCounter([]string{"kmskeeper", "leases", "restored"}, 1)
	ng, err := m.writeLease(ctx, b, fresh)
	return ng, true, err
}

// noteDuplicates reports, once per holder, the leases another process wrote
// on this server's generations after this process started: two processes
// are then serving with one server ID.
func (m *Manager) noteDuplicates(leases []Lease) {
	m.mu.RLock()
	started := m.startedAt
	m.mu.RUnlock()
	if started.IsZero() {
		return
	}
	m.dupMu.Lock()
	defer m.dupMu.Unlock()
	for _, l := range leases {
		if l.Holder == m.holder || m.duplicates[l.Holder] || !l.Renewed.After(started.Add(duplicateMargin)) {
			continue
		}
		if len(m.duplicates) >= maxReportedHolders {
			// A peer in a crash loop takes a new holder name at each start:
			// forget the old ones rather than grow for the life of the
			// process. A holder forgotten and seen again is reported again.
			clear(m.duplicates)
		}
		m.duplicates[l.Holder] = true
		m.log.Error("Another process is serving keys with this server's ID: it recorded a lease on one of them after this process started. Two SPIRE servers use the same key_identifier_value or identifier file; neither retires a key the other holds, but each rotation leaves keys behind for a while and their CAs diverge. Give every server its own identifier",
			"server_id", m.serverID, "holder", m.holder, "other_holder", l.Holder, "ref", l.Ref, "lease_renewed", l.Renewed.UTC().Format(time.RFC3339))
		m.metrics.IncrCounter([]string{"kmskeeper", "keys", "conflicts"}, 1)
	}
}

// maxReportedHolders bounds the holders remembered as sharing this server
// ID, so that each is reported once without the set growing for ever.
const maxReportedHolders = 64

// releaseBudget bounds the lease releases of a stop (or the call budget,
// if shorter): a stop must not hang on a cloud that does not answer.
const releaseBudget = 5 * time.Second

// release removes this process's lease from gens, so that a successor
// started after a clean stop may retire them once superseded and settled.
// It is best effort: a lease left behind only delays that retirement until
// the lease ends.
func (m *Manager) release(b Backend, gens []Generation) {
	if len(gens) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(releaseBudget, m.budget))
	defer cancel()
	var released atomic.Int64
	m.inParallel(len(gens), func(i int) {
		g := gens[i]
		fresh, err := b.Refresh(ctx, g)
		if err == nil {
			fresh.Leases = slices.DeleteFunc(slices.Clone(fresh.Leases), func(l Lease) bool { return l.Holder == m.holder || l.Ref != g.Ref })
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
