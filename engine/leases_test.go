package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/internal/syncbuf"
)

// livenessStep runs what each manager's background work does over d, in
// steps of the default liveness interval: keep-alives, due tasks and a
// cleanup pass.
func livenessStep(t *testing.T, e *env, d time.Duration, ms ...*engine.Manager) {
	t.Helper()
	ctx := context.Background()
	for step := engine.DefaultLivenessInterval; d > 0; d -= step {
		e.clock.Advance(min(step, d))
		for _, m := range ms {
			if err := m.KeepAlive(ctx); err != nil {
				t.Fatalf("%s: KeepAlive: %v", m.Holder(), err)
			}
			m.RunDue(ctx)
			mustCleanup(t, m)
		}
	}
}

// TestDuplicateServerIDKeepsKeysTheOtherServes runs two processes with one
// server ID on one store, the second started ten minutes after the first
// adopted its key. Each rotation keeps the generation the other still
// serves (a live lease holds it), both keep signing, the first reports the
// second, and once neither serves a generation and their leases on it have
// ended, a cleanup pass retires it.
func TestDuplicateServerIDKeepsKeysTheOtherServes(t *testing.T) {
	ctx := context.Background()
	var logA, logB syncbuf.Buffer
	e := newEnv(t)
	a := e.open(t, "server-a", engine.Options{Holder: "aaaaaaaa", Logger: bufferLogger(&logA)})
	first := mustGenerate(t, a, "x509-CA-A")
	x1 := e.refOf(t, first)
	e.clock.Advance(10 * time.Minute)
	b := e.open(t, "server-a", engine.Options{Holder: "bbbbbbbb", Logger: bufferLogger(&logB)})
	if got, _ := b.GetPublicKey(ctx, "x509-CA-A"); got.Fingerprint != first.Fingerprint {
		t.Fatalf("the second process serves %s, want the adopted %s", got.Fingerprint, first.Fingerprint)
	}

	// The first process rotates: the generation the second serves stays,
	// settled or not.
	e.clock.Advance(time.Minute)
	x2 := e.refOf(t, mustGenerate(t, a, "x509-CA-A"))
	e.clock.Advance(settle + time.Minute)
	a.RunDue(ctx)
	if !strings.Contains(logA.String(), "another process holds a lease on it") {
		t.Errorf("the first process did not say why it keeps x1:\n%s", logA.String())
	}
	as := mustCleanup(t, a)
	for _, x := range as {
		if x.Ref == x1 && (x.State != engine.StateHeld || x.HeldBy.Holder != "bbbbbbbb") {
			t.Errorf("x1 is %s held by %q to the first process, want held by the second", x.State, x.HeldBy.Holder)
		}
	}
	if !e.has(x1) {
		t.Fatalf("the first process retired %s, which the second serves", x1)
	}
	mustSign(t, b, "x509-CA-A")
	mustSign(t, a, "x509-CA-A")
	if !strings.Contains(logA.String(), "Another process is serving keys with this server's ID") || !strings.Contains(logA.String(), "other_holder=bbbbbbbb") {
		t.Errorf("the first process did not report the second:\n%s", logA.String())
	}

	// The second rotates too: x2, which the first serves, stays; x1 goes
	// once settled, since both holders ended their leases on it when they
	// superseded it (nothing infers that a holder moved on: each says so).
	e.clock.Advance(time.Minute)
	x3 := e.refOf(t, mustGenerate(t, b, "x509-CA-A"))
	livenessStep(t, e, settle+time.Hour, a, b)
	st := states(mustCleanup(t, b))
	if _, left := st[x1]; left || st[x2] != engine.StateHeld || st[x3] != engine.StateInUse {
		t.Errorf("to the second process: %v (x1 %s, x2 %s, x3 %s)", st, x1, x2, x3)
	}
	if e.has(x1) {
		t.Errorf("x1 is still there after both holders superseded it and it settled")
	}
	mustSign(t, a, "x509-CA-A")
	mustSign(t, b, "x509-CA-A")

	// Once the leases on x1 have ended, x1 is retired; what each serves
	// stays through days of keep-alives and cleanup passes.
	livenessStep(t, e, engine.LeaseTTL(engine.Schedule{})+engine.DefaultLivenessInterval, a, b)
	if e.has(x1) {
		t.Errorf("x1 is still there after the leases on it ended")
	}
	if !e.has(x2) || !e.has(x3) {
		t.Fatalf("a served generation was retired: %v", e.store.Refs())
	}
	mustSign(t, a, "x509-CA-A")
	mustSign(t, b, "x509-CA-A")
}

// TestRestartKeepsPredecessorsGenerationUntilItsLeaseEnds restarts a server
// without a clean stop and rotates: the generation the dead process held is
// kept (it cannot be told from a live duplicate) until its lease ends, then
// a cleanup pass retires it; the restart is not reported as a duplicate.
func TestRestartKeepsPredecessorsGenerationUntilItsLeaseEnds(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	dead := e.open(t, "server-a", engine.Options{})
	x1 := e.refOf(t, mustGenerate(t, dead, "x509-CA-A"))
	e.clock.Advance(time.Minute)
	var logs syncbuf.Buffer
	m := e.open(t, "server-a", engine.Options{Logger: bufferLogger(&logs)})
	mustGenerate(t, m, "x509-CA-A")
	e.clock.Advance(settle + time.Minute)
	m.RunDue(ctx)
	for _, a := range mustCleanup(t, m) {
		if a.Ref == x1 && (a.State != engine.StateHeld || a.HeldBy.Holder != dead.Holder()) {
			t.Errorf("x1 is %s held by %q, want held by the dead process %s", a.State, a.HeldBy.Holder, dead.Holder())
		}
	}
	if !e.has(x1) {
		t.Fatal("x1 was retired while the dead process's lease still counts")
	}
	if strings.Contains(logs.String(), "Another process is serving keys") {
		t.Errorf("a restart was reported as a duplicate:\n%s", logs.String())
	}
	livenessStep(t, e, engine.LeaseTTL(engine.Schedule{}), m)
	if e.has(x1) {
		t.Errorf("x1 is still there after its lease ended")
	}
	mustSign(t, m, "x509-CA-A")
}

// TestCleanStopReleasesLeases stops a process cleanly: its successor, once
// it has superseded the generation the first one served, retires it when
// it has settled instead of keeping it until the first one's lease ends.
func TestCleanStopReleasesLeases(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	first := e.open(t, "server-a", engine.Options{})
	x1 := e.refOf(t, mustGenerate(t, first, "x509-CA-A"))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.holders(t, x1); len(got) != 0 {
		t.Fatalf("leases left after a clean stop: %v", got)
	}
	e.clock.Advance(time.Minute)
	m := e.open(t, "server-a", engine.Options{})
	mustGenerate(t, m, "x509-CA-A")
	m.RunDue(ctx)
	if !e.has(x1) {
		t.Fatal("x1 retired before it settled")
	}
	e.clock.Advance(settle + time.Second)
	m.RunDue(ctx)
	if e.has(x1) {
		t.Fatal("x1 not retired once settled, after its holder stopped cleanly")
	}
}

// TestPlanKeepsHeldGenerations checks that operator gc (Plan) keeps a
// superseded generation a process holds a live lease on, and retires it
// once the lease has ended. A holder that also holds a newer generation is
// not taken to have moved on: it may serve both (two slots, two processes).
func TestPlanKeepsHeldGenerations(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ttl := engine.LeaseTTL(engine.Schedule{})
	gen := func(ref string, created time.Time, leases ...engine.Lease) engine.Generation {
		return engine.Generation{KeyID: "x", Ref: ref, ServerID: "me", Created: created, Updated: created, Leases: leases}
	}
	lease := func(holder, ref string, at time.Time) engine.Lease {
		return engine.Lease{Holder: holder, Ref: ref, Renewed: at}
	}
	tests := []struct {
		name string
		old  engine.Lease
		also []engine.Lease // on the newest generation
		want engine.State
	}{
		{name: "live lease", old: lease("b", "x1", now.Add(-time.Hour)), want: engine.StateHeld},
		{name: "lease ended", old: lease("b", "x1", now.Add(-ttl-time.Minute)), want: engine.StateSuperseded},
		{name: "holder also holds the newer generation", old: lease("b", "x1", now.Add(-time.Hour)), also: []engine.Lease{lease("b", "x2", now.Add(-time.Minute))}, want: engine.StateHeld},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gens := []engine.Generation{
				gen("x1", now.Add(-3*time.Hour), tt.old),
				gen("x2", now.Add(-time.Hour), append([]engine.Lease{lease("a", "x2", now.Add(-time.Minute))}, tt.also...)...),
			}
			for _, a := range engine.Plan(gens, "me", now, engine.Schedule{}) {
				if a.Ref != "x1" {
					if a.State != engine.StateCurrent {
						t.Errorf("%s is %s, want current", a.Ref, a.State)
					}
					continue
				}
				if a.State != tt.want || a.Retire != (tt.want == engine.StateSuperseded) {
					t.Errorf("x1 is %s (retire %v), want %s", a.State, a.Retire, tt.want)
				}
				if tt.want == engine.StateHeld && a.HeldBy.Holder != "b" {
					t.Errorf("held by %q, want b", a.HeldBy.Holder)
				}
			}
		})
	}
}
