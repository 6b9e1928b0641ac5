package engine

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
)

// DefaultSettle is how long a generation must have been superseded, and its
// lease record left unwritten, before it may be retired. It covers the three
// things a retirement decided on a listing cannot see: a server that listed
// the generation as its key's newest and is still recording its lease on it
// (a start takes at most one call budget); a lease that a concurrent rewrite
// of the record dropped and that its holder restores after its read-back
// (the read-back delay plus a call, about 75 s); and the time between the
// decision's read and the deletion (two calls). The rest, most of it, is
// room for a holder whose process is paused (a stalled VM, a starved host)
// when its read-back falls due: up to about 25 minutes. A superseded key
// kept half an hour longer costs a fraction of a cent.
const DefaultSettle = 30 * time.Minute

// adoptMargin keeps a server from adopting a generation that peers may be
// about to retire as stale: one whose record was last written more than the
// stale period minus this margin ago.
const adoptMargin = 24 * time.Hour

// State says what a listed generation is to the process (or the operator
// tool) that assessed it.
type State string

// The states of a listed generation.
const (
	// StateInUse is a generation the assessing process serves or is still
	// signing with.
	StateInUse State = "in use"
	// StateCurrent is the newest committed generation of one of this
	// server's key IDs: a server that starts now adopts it, so it is never
	// retired.
	StateCurrent State = "current"
	// StateHeld is a superseded generation on which another process holds
	// a live lease: it may serve it.
	StateHeld State = "held"
	// StateSettling is a superseded generation that was superseded, or
	// whose lease record was written, within the settle period: it is
	// retired once that period has passed.
	StateSettling State = "settling"
	// StateSuperseded is a generation of this server that nobody serves:
	// older than the current one, or left by a creation that failed. It is
	// retired.
	StateSuperseded State = "superseded"
	// StateForeign is another server's generation that is still kept alive.
	StateForeign State = "foreign"
	// StateStale is another server's generation not kept alive for longer
	// than the stale period: that server is gone. It is retired.
	StateStale State = "stale"
)

// Assessment is one listed generation and what cleanup does with it.
type Assessment struct {
	Generation
	State  State
	Retire bool
	// HeldBy is the lease that keeps a StateHeld generation.
	HeldBy Lease
}

// Facts are what a retirement decision knows besides the listing. The
// plugin's cleanup, the retirement after a rotation, the leftovers at start,
// `gc` and `keys list` all decide with Decide; the operator tools, which
// cannot know what a running process serves, leave Holder and Serves empty
// and so keep everything any running process keeps.
type Facts struct {
	// ServerID is the server whose generations may be superseded.
	ServerID string
	// Holder is the deciding process's holder ID: its own leases do not
	// keep a generation from it, since it knows what it serves. Empty for
	// operator tools: every lease counts.
	Holder string
	// Serves reports whether the deciding process serves ref or still signs
	// with it. Nil for operator tools.
	Serves func(ref string) bool
	// Now is the cloud's time, as a lower bound.
	Now time.Time
	// Schedule gives the lease and stale periods; zero fields take the
	// defaults.
	Schedule Schedule
	// Settle is the settle period; zero means DefaultSettle.
	Settle time.Duration
}

func (f Facts) withDefaults() Facts {
	f.Schedule = f.Schedule.withDefaults()
	if f.Settle <= 0 {
		f.Settle = DefaultSettle
	}
	return f
}

// Decide is the one retirement rule. For each generation it says what it is
// and whether it may be retired:
//
//   - another server's generation is retired once its record has not been
//     written for the stale period and no live lease is on it;
//   - this server's generation is kept while the deciding process serves
//     it, while it is the newest committed generation of its key ID (any
//     server starting now adopts that one), while another process holds a
//     live lease on it, and until it has settled: its record unwritten and
//     a newer committed generation present for the settle period (a
//     generation that was never committed only needs its record to settle).
//
// Nothing else is inferred: a generation is never taken to be unused
// because its holder seems to have moved on. Ages are judged on f.Now, the
// cloud's time.
func Decide(gens []Generation, f Facts) []Assessment {
	f = f.withDefaults()
	groups := keyGroups(gens, f.ServerID)
	out := make([]Assessment, 0, len(gens))
	for _, g := range gens {
		out = append(out, decideOne(g, groups[g.KeyID], f))
	}
	return out
}

func decideOne(g Generation, group []Generation, f Facts) Assessment {
	a := Assessment{Generation: g}
	ttl := f.Schedule.leaseTTL()
	if g.ServerID != f.ServerID {
		if _, held := liveLease(g, "", f.Now, ttl); !held && f.Now.Sub(lastWritten(g)) > f.Schedule.StaleAfter {
			a.State, a.Retire = StateStale, true
		} else {
			a.State = StateForeign
		}
		return a
	}
	if f.Serves != nil && f.Serves(g.Ref) {
		a.State = StateInUse
		return a
	}
	if current(g, group) {
		a.State = StateCurrent
		return a
	}
	if l, held := liveLease(g, f.Holder, f.Now, ttl); held {
		a.State, a.HeldBy = StateHeld, l
		return a
	}
	if !settled(g, group, f) {
		a.State = StateSettling
		return a
	}
	a.State, a.Retire = StateSuperseded, true
	return a
}

// pending reports whether g was never committed: it carries a pending lease
// and no other.
func pending(g Generation) bool {
	found := false
	for _, l := range g.Leases {
		if l.Ref != g.Ref {
			continue
		}
		if !l.Pending {
			return false
		}
		found = true
	}
	return found
}

// current reports whether g is the newest committed generation of its group.
func current(g Generation, group []Generation) bool {
	if pending(g) {
		return false
	}
	for _, o := range group {
		if o.Ref != g.Ref && !pending(o) && newerThan(o, g) {
			return false
		}
	}
	return true
}

// settled reports whether g's record has been unwritten, and (for a
// committed generation) a newer committed generation present, for the settle
// period.
func settled(g Generation, group []Generation, f Facts) bool {
	if f.Now.Sub(lastWritten(g)) < f.Settle {
		return false
	}
	if pending(g) {
		// The newest generation records the creation count a restart
		// reads (RecentCreations): it stays for the rate guard's hour.
		return !newest(g, group) || f.Now.Sub(g.Created) >= guardWindow
	}
	for _, o := range group {
		if o.Ref != g.Ref && !pending(o) && newerThan(o, g) && f.Now.Sub(o.Created) >= f.Settle {
			return true
		}
	}
	return false
}

// newest reports whether no generation of group is newer than g.
func newest(g Generation, group []Generation) bool {
	for _, o := range group {
		if o.Ref != g.Ref && newerThan(o, g) {
			return false
		}
	}
	return true
}

// lastWritten is when g's record was last written, as far as the listing
// tells.
func lastWritten(g Generation) time.Time {
	if g.Updated.After(g.Created) {
		return g.Updated
	}
	return g.Created
}

// liveLease returns a committed lease on g by a holder other than self,
// renewed within ttl of now (or after now: a clock ahead of ours wrote it).
func liveLease(g Generation, self string, now time.Time, ttl time.Duration) (Lease, bool) {
	for _, l := range g.Leases {
		if l.Ref == g.Ref && !l.Pending && (self == "" || l.Holder != self) && now.Sub(l.Renewed) <= ttl {
			return l, true
		}
	}
	return Lease{}, false
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

// newerThan orders generations by creation time, then by reference, so that
// every process, and a process after a restart, picks the same newest one.
func newerThan(a, b Generation) bool {
	if !a.Created.Equal(b.Created) {
		return a.Created.After(b.Created)
	}
	return a.Ref > b.Ref
}

// adoptable returns the generation of a key ID that a starting server
// serves: the newest committed one, if any.
func adoptable(group []Generation) (Generation, bool) {
	for _, g := range group {
		if current(g, group) {
			return g, true
		}
	}
	return Generation{}, false
}

// Plan assesses a listing as an operator tool does, without a running
// process: every lease counts and nothing is known to be served. now is the
// cloud's time (see CloudNow). Zero schedule fields take the defaults.
func Plan(gens []Generation, serverID string, now time.Time, schedule Schedule) []Assessment {
	return Decide(gens, Facts{ServerID: serverID, Now: now, Schedule: schedule})
}

// CloudNow estimates the cloud's current time for a tool that has just
// listed gens with b: the time b's answers carried, or else the newest
// creation time listed, or else local. It is a lower bound, as the engine's.
func CloudNow(b Backend, gens []Generation, local time.Time) time.Time {
	var now time.Time
	if t, ok := b.(CloudTimer); ok {
		now = t.CloudTime()
	}
	for _, g := range gens {
		if g.Created.After(now) {
			now = g.Created
		}
	}
	if now.IsZero() {
		return local
	}
	return now
}

// Recheck reads a's generation again and decides once more, over gens (the
// listing a was assessed in) with the generation's record as the cloud holds
// it now. A retirement decided on a listing is applied only after a Recheck
// that still says so, made at most one call before the retirement: what
// changed since the listing (a lease restored, a key kept alive) counts.
// f.Now is moved on to the cloud's time the read reported. A generation
// already gone is returned with Retire false.
func Recheck(ctx context.Context, b Backend, a Assessment, gens []Generation, f Facts) (Assessment, error) {
	fresh, err := b.Refresh(ctx, a.Generation)
	if err != nil {
		if Code(err) == codes.NotFound {
			a.Retire = false
			return a, nil
		}
		return a, err
	}
	if t, ok := b.(CloudTimer); ok && t.CloudTime().After(f.Now) {
		f.Now = t.CloudTime()
	}
	list := make([]Generation, 0, len(gens))
	for _, g := range gens {
		if g.Ref != a.Ref {
			list = append(list, g)
		}
	}
	list = append(list, fresh)
	f = f.withDefaults()
	return decideOne(fresh, keyGroups(list, f.ServerID)[fresh.KeyID], f), nil
}
