package engine_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// TestDecide covers every state of the retirement rule and the edge of
// each of its time bounds, under the default schedule (lease period 36 h,
// stale period 14 days) and settle period (30 min) unless a case sets
// others. Each case decides on x1 of a listing.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const (
		ms   = time.Millisecond
		day  = 24 * time.Hour
		me   = "me"
		self = "self-holder"
	)
	ttl := engine.LeaseTTL(engine.Schedule{})
	// A schedule whose lease period is longer than the default's.
	long := engine.Schedule{KeepAliveAge: 48 * time.Hour}
	longTTL := engine.LeaseTTL(long)
	stale := engine.DefaultStaleAfter
	lease := func(holder, ref string, renewed time.Time) engine.Lease {
		return engine.Lease{Holder: holder, Ref: ref, Renewed: renewed}
	}
	pendingLease := func(holder, ref string, renewed time.Time) engine.Lease {
		return engine.Lease{Holder: holder, Ref: ref, Renewed: renewed, Pending: true}
	}
	gen := func(ref, server string, created, updated time.Time, leases ...engine.Lease) engine.Generation {
		return engine.Generation{KeyID: "k", Ref: ref, ServerID: server, Created: created, Updated: updated, Leases: leases}
	}
	// x1 superseded by x2 long ago, both settled, x1 without leases: the
	// base most cases change one thing of.
	x1 := func(leases ...engine.Lease) engine.Generation {
		return gen("x1", me, ago(3*day), ago(2*day), leases...)
	}
	x2 := gen("x2", me, ago(day), ago(day), lease("other", "x2", ago(day)))
	x0 := gen("x0", me, ago(5*day), ago(5*day))

	tests := []struct {
		name     string
		gens     []engine.Generation
		holder   string          // Facts.Holder; "" for an operator tool
		serves   map[string]bool // Facts.Serves; nil for an operator tool
		settle   time.Duration   // Facts.Settle; zero for the default
		schedule engine.Schedule
		want     engine.State
		heldBy   string
	}{
		// In use and current.
		{name: "served", gens: []engine.Generation{x1(), x2}, holder: self, serves: map[string]bool{"x1": true}, want: engine.StateInUse},
		{name: "served beats current", gens: []engine.Generation{x1()}, holder: self, serves: map[string]bool{"x1": true}, want: engine.StateInUse},
		{name: "newest committed is current however old", gens: []engine.Generation{gen("x1", me, ago(300*day), ago(300*day))}, want: engine.StateCurrent},
		{name: "a newer pending generation does not supersede", gens: []engine.Generation{x1(), gen("x2", me, ago(day), ago(day), pendingLease("other", "x2", ago(day)))}, want: engine.StateCurrent},
		{name: "a newer generation on another key ID does not supersede", gens: []engine.Generation{x1(), {KeyID: "j", Ref: "x2", ServerID: me, Created: ago(day), Updated: ago(day)}}, want: engine.StateCurrent},
		{name: "another server's newer generation does not supersede", gens: []engine.Generation{x1(), gen("x2", "peer", ago(day), ago(day))}, want: engine.StateCurrent},
		{name: "same creation time: the higher ref is newer", gens: []engine.Generation{gen("x1", me, ago(day), ago(day)), gen("x0", me, ago(day), ago(day))}, want: engine.StateCurrent},
		{name: "same creation time: the lower ref is superseded", gens: []engine.Generation{gen("x1", me, ago(day), ago(day)), gen("x9", me, ago(day), ago(day))}, want: engine.StateSuperseded},

		// Held: a live committed lease of another holder.
		{name: "lease renewed just now", gens: []engine.Generation{x1(lease("b", "x1", now)), x2}, want: engine.StateHeld, heldBy: "b"},
		{name: "lease renewed exactly the lease period ago", gens: []engine.Generation{x1(lease("b", "x1", ago(ttl))), x2}, want: engine.StateHeld, heldBy: "b"},
		{name: "lease renewed just over the lease period ago", gens: []engine.Generation{x1(lease("b", "x1", ago(ttl+ms))), x2}, want: engine.StateSuperseded},
		{name: "lease renewed in the future counts as live", gens: []engine.Generation{x1(lease("b", "x1", now.Add(20*day))), x2}, want: engine.StateHeld, heldBy: "b"},
		{name: "the deciding process's own lease is ignored", gens: []engine.Generation{x1(lease(self, "x1", ago(time.Hour))), x2}, holder: self, serves: map[string]bool{}, want: engine.StateSuperseded},
		{name: "another's lease counts beside the own one", gens: []engine.Generation{x1(lease(self, "x1", ago(time.Hour)), lease("b", "x1", ago(2*time.Hour))), x2}, holder: self, serves: map[string]bool{}, want: engine.StateHeld, heldBy: "b"},
		{name: "every lease counts for an operator tool", gens: []engine.Generation{x1(lease(self, "x1", ago(time.Hour))), x2}, want: engine.StateHeld, heldBy: self},
		{name: "a pending lease never holds", gens: []engine.Generation{x1(lease(self, "x1", ago(ttl+ms)), pendingLease("b", "x1", ago(time.Hour))), x2}, want: engine.StateSuperseded},
		{name: "a lease on another generation does not hold", gens: []engine.Generation{x1(lease("b", "x2", ago(time.Hour))), x2}, want: engine.StateSuperseded},
		{name: "holding the newer generation too is no sign of moving on", gens: []engine.Generation{x1(lease("b", "x1", ago(2*time.Hour))), gen("x2", me, ago(day), ago(day), lease("b", "x2", ago(time.Hour)))}, want: engine.StateHeld, heldBy: "b"},
		{name: "lease period from the schedule", gens: []engine.Generation{x1(lease("b", "x1", ago(longTTL+ms))), x2}, schedule: long, want: engine.StateSuperseded},
		{name: "lease period from the schedule, live", gens: []engine.Generation{x1(lease("b", "x1", ago(longTTL))), x2}, schedule: long, want: engine.StateHeld, heldBy: "b"},
		{name: "lease live under the longer schedule only", gens: []engine.Generation{x1(lease("b", "x1", ago(ttl+ms))), x2}, schedule: long, want: engine.StateHeld, heldBy: "b"},

		// Settling: the record, and the newer committed sibling, must be
		// older than the settle period.
		{name: "record written just under the settle period ago", gens: []engine.Generation{gen("x1", me, ago(3*day), ago(settle-ms)), x2}, want: engine.StateSettling},
		{name: "record written the settle period ago", gens: []engine.Generation{gen("x1", me, ago(3*day), ago(settle)), x2}, want: engine.StateSuperseded},
		{name: "record never updated: its creation counts", gens: []engine.Generation{gen("x1", me, ago(settle-ms), time.Time{}, pendingLease("b", "x1", ago(day))), gen("x2", me, ago(time.Minute), ago(time.Minute))}, want: engine.StateSettling},
		{name: "record never updated, created the settle period ago", gens: []engine.Generation{gen("x1", me, ago(settle), time.Time{}, pendingLease("b", "x1", ago(day))), gen("x2", me, ago(time.Minute), ago(time.Minute))}, want: engine.StateSuperseded},
		{name: "newer sibling created just under the settle period ago", gens: []engine.Generation{x1(), gen("x2", me, ago(settle-ms), ago(settle-ms))}, want: engine.StateSettling},
		{name: "newer sibling created the settle period ago", gens: []engine.Generation{x1(), gen("x2", me, ago(settle), ago(settle))}, want: engine.StateSuperseded},
		{name: "one settled newer sibling is enough", gens: []engine.Generation{x1(), gen("x2", me, ago(settle), ago(settle)), gen("x3", me, ago(time.Minute), ago(time.Minute))}, want: engine.StateSuperseded},
		{name: "a pending newer sibling does not settle it", gens: []engine.Generation{x1(), gen("x2", me, ago(2*settle), ago(2*settle), pendingLease("b", "x2", ago(2*settle))), gen("x3", me, ago(time.Minute), ago(time.Minute))}, want: engine.StateSettling},
		{name: "settle period from the facts", gens: []engine.Generation{gen("x1", me, ago(3*day), ago(2*time.Hour-ms)), x2}, settle: 2 * time.Hour, want: engine.StateSettling},
		{name: "settle period from the facts, settled", gens: []engine.Generation{gen("x1", me, ago(3*day), ago(2*time.Hour)), x2}, settle: 2 * time.Hour, want: engine.StateSuperseded},

		// Generations of failed creations: pending, never committed.
		{name: "pending and newest: kept for the creation count's hour", gens: []engine.Generation{gen("x1", me, ago(time.Hour-ms), ago(time.Hour-ms), pendingLease("b", "x1", ago(time.Hour))), x0}, want: engine.StateSettling},
		{name: "pending and newest, an hour old", gens: []engine.Generation{gen("x1", me, ago(time.Hour), ago(time.Hour), pendingLease("b", "x1", ago(time.Hour))), x0}, want: engine.StateSuperseded},
		{name: "pending and alone, an hour old", gens: []engine.Generation{gen("x1", me, ago(time.Hour), ago(time.Hour), pendingLease("b", "x1", ago(time.Hour)))}, want: engine.StateSuperseded},
		{name: "pending, not newest: only its record must settle", gens: []engine.Generation{gen("x1", me, ago(settle), ago(settle), pendingLease("b", "x1", ago(settle))), gen("x2", me, ago(time.Minute), ago(time.Minute))}, want: engine.StateSuperseded},
		{name: "pending, not newest, record just written", gens: []engine.Generation{gen("x1", me, ago(settle-ms), ago(settle-ms), pendingLease("b", "x1", ago(settle))), gen("x2", me, ago(time.Minute), ago(time.Minute))}, want: engine.StateSettling},

		// Other servers' generations.
		{name: "peer written just now", gens: []engine.Generation{gen("x1", "peer", ago(30*day), now)}, want: engine.StateForeign},
		{name: "peer written exactly the stale period ago", gens: []engine.Generation{gen("x1", "peer", ago(30*day), ago(stale))}, want: engine.StateForeign},
		{name: "peer written just over the stale period ago", gens: []engine.Generation{gen("x1", "peer", ago(30*day), ago(stale+ms))}, want: engine.StateStale},
		{name: "peer never updated: its creation counts", gens: []engine.Generation{gen("x1", "peer", ago(stale-ms), time.Time{})}, want: engine.StateForeign},
		{name: "stale peer with a live lease", gens: []engine.Generation{gen("x1", "peer", ago(30*day), ago(20*day), lease("p", "x1", ago(ttl)))}, want: engine.StateForeign},
		{name: "stale peer with a pending lease", gens: []engine.Generation{gen("x1", "peer", ago(30*day), ago(20*day), pendingLease("p", "x1", now))}, want: engine.StateStale},
		{name: "stale peer, a process's own lease on it still counts", gens: []engine.Generation{gen("x1", "peer", ago(30*day), ago(20*day), lease(self, "x1", ago(time.Hour)))}, holder: self, serves: map[string]bool{}, want: engine.StateForeign},
		{name: "stale period from the schedule", gens: []engine.Generation{gen("x1", "peer", ago(30*day), ago(2*day+ms))}, schedule: engine.Schedule{StaleAfter: 2 * day}, want: engine.StateStale},
		{name: "a peer's generation is never served by this server", gens: []engine.Generation{gen("x1", "peer", ago(30*day), ago(20*day))}, holder: self, serves: map[string]bool{"x1": true}, want: engine.StateStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := engine.Facts{ServerID: me, Holder: tt.holder, Now: now, Schedule: tt.schedule, Settle: tt.settle}
			if tt.serves != nil {
				f.Serves = func(ref string) bool { return tt.serves[ref] }
			}
			as := engine.Decide(tt.gens, f)
			if len(as) != len(tt.gens) {
				t.Fatalf("%d assessments for %d generations", len(as), len(tt.gens))
			}
			for _, a := range as {
				if a.Ref != "x1" {
					continue
				}
				retire := tt.want == engine.StateSuperseded || tt.want == engine.StateStale
				if a.State != tt.want || a.Retire != retire {
					t.Errorf("x1 is %s (retire %v), want %s (retire %v)", a.State, a.Retire, tt.want, retire)
				}
				if a.HeldBy.Holder != tt.heldBy {
					t.Errorf("held by %q, want %q", a.HeldBy.Holder, tt.heldBy)
				}
				return
			}
			t.Fatal("x1 not assessed")
		})
	}
}

// TestPlan assesses a listing as `gc` and `keys list` do.
func TestPlan(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	gens := []engine.Generation{
		{KeyID: "a", Ref: "a1", ServerID: "me", Created: now.Add(-3 * day), Updated: now.Add(-3 * day)},
		{KeyID: "a", Ref: "a2", ServerID: "me", Created: now.Add(-1 * day), Updated: now.Add(-1 * day)},
		{KeyID: "b", Ref: "b1", ServerID: "me", Created: now.Add(-30 * day), Updated: now.Add(-30 * day)},
		{KeyID: "a", Ref: "o1", ServerID: "other", Created: now.Add(-30 * day), Updated: now.Add(-16 * day)},
		{KeyID: "a", Ref: "o2", ServerID: "other2", Created: now.Add(-30 * day), Updated: now.Add(-13 * day)},
	}
	want := map[string]engine.State{"a1": engine.StateSuperseded, "a2": engine.StateCurrent, "b1": engine.StateCurrent, "o1": engine.StateStale, "o2": engine.StateForeign}
	for _, a := range engine.Plan(gens, "me", now, engine.Schedule{}) {
		if a.State != want[a.Ref] || a.Retire != (a.State == engine.StateSuperseded || a.State == engine.StateStale) {
			t.Errorf("%s: state %s retire %v; want %s", a.Ref, a.State, a.Retire, want[a.Ref])
		}
	}
	// A local clock 20 days behind the cloud: CloudNow takes the newest
	// creation time listed, and o1 is still stale.
	cloudNow := engine.CloudNow(nil, gens, now.Add(-20*day))
	if !cloudNow.Equal(now.Add(-day)) {
		t.Fatalf("CloudNow = %v, want the newest creation time %v", cloudNow, now.Add(-day))
	}
	for _, a := range engine.Plan(gens, "me", cloudNow, engine.Schedule{}) {
		if a.Ref == "o1" && a.State != engine.StateStale {
			t.Errorf("o1 with a slow clock: %s", a.State)
		}
	}
}

// timed is a backend that reports a cloud time.
type timed struct {
	engine.Backend
	at time.Time
}

func (b timed) CloudTime() time.Time { return b.at }

func TestCloudNow(t *testing.T) {
	local := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	gens := []engine.Generation{{Ref: "a", Created: local.Add(-time.Hour)}, {Ref: "b", Created: local.Add(time.Hour)}}
	tests := []struct {
		name string
		b    engine.Backend
		gens []engine.Generation
		want time.Time
	}{
		{"nothing known: local", nil, nil, local},
		{"no cloud time: the newest creation", nil, gens, local.Add(time.Hour)},
		{"cloud time behind local is trusted", timed{at: local.Add(-15 * 24 * time.Hour)}, nil, local.Add(-15 * 24 * time.Hour)},
		{"cloud time ahead of local", timed{at: local.Add(15 * 24 * time.Hour)}, gens, local.Add(15 * 24 * time.Hour)},
		{"a later creation raises the cloud time", timed{at: local}, gens, local.Add(time.Hour)},
		{"a cloud timer that saw no answer yet", timed{}, nil, local},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := engine.CloudNow(tt.b, tt.gens, local); !got.Equal(tt.want) {
				t.Errorf("CloudNow = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRecheck decides on the record read again: a lease written since the
// listing keeps the generation, a generation already gone is not retired,
// and the cloud's time the read reports moves the decision on.
func TestRecheck(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	now := e.clock.Now()
	x1 := e.addKey(t, "me", "k", now.Add(-3*time.Hour), now.Add(-3*time.Hour))
	x2 := e.addKey(t, "me", "k", now.Add(-2*time.Hour), now.Add(-2*time.Hour))
	b := e.store.Backend(td, "me")
	gens, err := b.ListGenerations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := engine.Facts{ServerID: "me", Now: engine.CloudNow(b, gens, now)}
	var a engine.Assessment
	for _, x := range engine.Plan(gens, "me", f.Now, engine.Schedule{}) {
		if x.Ref == x1 {
			a = x
		}
	}
	if !a.Retire {
		t.Fatalf("x1 is %s, want superseded", a.State)
	}

	// Unchanged: still retired.
	if got, err := engine.Recheck(ctx, b, a, gens, f); err != nil || !got.Retire || got.State != engine.StateSuperseded {
		t.Fatalf("Recheck of an unchanged record = %s (retire %v), %v", got.State, got.Retire, err)
	}
	// A process recorded its lease since the listing.
	leased := e.gen(t, x1)
	leased.Leases = []engine.Lease{{Holder: "p", Ref: x1, Renewed: now}}
	if _, err := b.KeepAlive(ctx, leased); err != nil {
		t.Fatal(err)
	}
	got, err := engine.Recheck(ctx, b, a, gens, f)
	if err != nil || got.Retire || got.State != engine.StateHeld || got.HeldBy.Holder != "p" {
		t.Fatalf("Recheck after a lease was written = %s (retire %v, held by %q), %v", got.State, got.Retire, got.HeldBy.Holder, err)
	}
	// The cloud's clock, read with the record, says the lease has ended
	// although the facts' time is older.
	e.clock.Advance(engine.LeaseTTL(engine.Schedule{}) + time.Minute)
	got, err = engine.Recheck(ctx, b, a, gens, f)
	if err != nil || !got.Retire {
		t.Fatalf("Recheck once the lease ended by the cloud's clock = %s (retire %v), %v", got.State, got.Retire, err)
	}
	// Gone already.
	if err := b.Retire(ctx, a.Generation); err != nil {
		t.Fatal(err)
	}
	if got, err := engine.Recheck(ctx, b, a, gens, f); err != nil || got.Retire {
		t.Fatalf("Recheck of a retired generation = retire %v, %v", got.Retire, err)
	}
	// A read that fails is an error, never a retirement.
	e.setHook(func(context.Context, string, string) error { return engine.Errorf(codes.Unavailable, "down") })
	var a2 engine.Assessment
	a2.Generation = e.gen(t, x2)
	if _, err := engine.Recheck(ctx, b, a2, gens, f); engine.Code(err) != codes.Unavailable {
		t.Fatalf("Recheck with the cloud down = %v", err)
	}
}
