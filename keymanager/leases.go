package keymanager

import (
	"crypto/rand"
	"encoding/base32"
	"slices"
	"strings"
	"time"
)

// MaxLeases bounds the leases recorded on one generation (on one Cloud KMS
// CryptoKey), so that they fit the cloud's tag and label limits. The oldest
// go first: a process whose lease is pushed out restores it at its next
// keep-alive.
const MaxLeases = 6

// duplicateMargin is how much later than this process's start another
// holder's lease must have been written for the two to be reported as
// running at once: it absorbs the difference between the processes' clocks.
const duplicateMargin = 5 * time.Minute

// leaseTTL is how long a lease counts after it was written: a process renews
// the leases of the generations it serves at least every KeepAliveAge plus
// one LivenessInterval; one more interval allows a failed pass.
func (s Schedule) leaseTTL() time.Duration {
	return s.KeepAliveAge + 2*s.LivenessInterval
}

// LeaseTTL is how long a lease keeps a generation from being retired after
// it was last written, under schedule s (zero fields take the defaults).
func LeaseTTL(s Schedule) time.Duration { return s.withDefaults().leaseTTL() }

// newHolder returns a random holder ID: 8 characters among lowercase letters
// and digits, which every cloud accepts in a tag or label name.
func newHolder() string {
	var b [5]byte
	rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// leaseSet gathers the leases listed with the generations of one server's key
// ID, each once.
func leaseSet(gens []Generation) []Lease {
	var out []Lease
	for _, g := range gens {
		for _, l := range g.Leases {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	return out
}

// blockingLease returns a lease that keeps g from being retired: a lease on
// g by a process other than self, written within ttl of now, whose holder
// has not moved on. A holder has moved on when it holds another generation
// of the key ID by a lease written no earlier (a process only ever moves to
// newer generations), or when it is the only other holder and a newer
// generation nobody holds exists: only a holder of g can have made that one,
// in a rotation that ended before its lease was written.
//
// leases are all the leases known on the key ID's generations; newerUnheld
// says whether a newer generation without any live lease exists (other than
// one self made).
func blockingLease(g Generation, leases []Lease, newerUnheld bool, self string, now time.Time, ttl time.Duration) (Lease, bool) {
	var holding []Lease
	for _, l := range leases {
		if l.Ref != g.Ref || l.Holder == self || now.Sub(l.Renewed) > ttl {
			continue
		}
		movedOn := false
		for _, o := range leases {
			if o.Holder == l.Holder && o.Ref != l.Ref && !o.Renewed.Before(l.Renewed) {
				movedOn = true
				break
			}
		}
		if !movedOn {
			holding = append(holding, l)
		}
	}
	if len(holding) == 0 || (len(holding) == 1 && newerUnheld) {
		return Lease{}, false
	}
	return holding[0], true
}

// live reports whether any lease in leases on ref was written within ttl of
// now.
func live(leases []Lease, ref string, now time.Time, ttl time.Duration) bool {
	for _, l := range leases {
		if l.Ref == ref && now.Sub(l.Renewed) <= ttl {
			return true
		}
	}
	return false
}

// keyGroups groups the generations of serverID by key ID.
func keyGroups(gens []Generation, serverID string) map[string][]Generation {
	out := make(map[string][]Generation)
	for _, g := range gens {
		if g.ServerID == serverID {
			out[g.KeyID] = append(out[g.KeyID], g)
		}
	}
	return out
}

// holdCheck decides, for generations of one server listed together, whether
// a live lease of another process keeps each from being retired.
type holdCheck struct {
	groups map[string][]Generation
	self   string
	// mine reports whether self made or serves a generation (a newer
	// generation self made explains nothing about other holders).
	mine func(ref string) bool
	now  time.Time
	ttl  time.Duration
}

// blocked returns the lease that keeps g from being retired, if any.
func (c holdCheck) blocked(g Generation) (Lease, bool) {
	group := c.groups[g.KeyID]
	leases := leaseSet(group)
	newerUnheld := false
	for _, o := range group {
		if o.Ref != g.Ref && newerThan(o, g) && !live(leases, o.Ref, c.now, c.ttl) && (c.mine == nil || !c.mine(o.Ref)) {
			newerUnheld = true
		}
	}
	return blockingLease(g, leases, newerUnheld, c.self, c.now, c.ttl)
}

// newerThan orders generations as sortNewestFirst does.
func newerThan(a, b Generation) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.After(b.Created)
	}
	return a.Ref > b.Ref
}

// withLease returns g with the leases to record on it: the live leases of
// other processes on g (the newest MaxLeases-1), then this process's, written
// at now.
func withLease(g Generation, self string, now time.Time, ttl time.Duration) Generation {
	var others []Lease
	for _, l := range g.Leases {
		if l.Ref == g.Ref && l.Holder != self && now.Sub(l.Renewed) <= ttl {
			others = append(others, l)
		}
	}
	slices.SortFunc(others, func(a, b Lease) int { return b.Renewed.Compare(a.Renewed) })
	if len(others) > MaxLeases-1 {
		others = others[:MaxLeases-1]
	}
	g.Leases = append(others, Lease{Holder: self, Ref: g.Ref, Renewed: now.Truncate(time.Millisecond)})
	return g
}
