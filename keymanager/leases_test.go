package keymanager_test

import (
	"context"
	"crypto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/internal/syncbuf"
	"github.com/kmskeeper/kmskeeper/keymanager"
)

func bufferLogger(b *syncbuf.Buffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: b, Level: hclog.Debug})
}

// mustSign signs with id and fails the test if the signature is refused.
func mustSign(t *testing.T, m *keymanager.Manager, id string) {
	t.Helper()
	if _, _, err := m.SignData(context.Background(), id, digest(crypto.SHA256, "m"), crypto.SHA256); err != nil {
		t.Fatalf("%s: SignData(%s): %v", m.Holder(), id, err)
	}
}

// TestDuplicateServerIDKeepsKeysTheOtherServes runs two processes with one
// server ID on one store, the second started ten minutes after the first
// adopted its key. Each rotation keeps the generation the other still
// serves, both keep signing, the first reports the second, and once both
// have moved on a cleanup pass retires the generation neither serves.
func TestDuplicateServerIDKeepsKeysTheOtherServes(t *testing.T) {
	ctx := context.Background()
	var logA, logB syncbuf.Buffer
	e := newEnv(t, keymanager.Options{Holder: "aaaaaaaa", Logger: bufferLogger(&logA)})
	a := e.m
	first, err := a.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	x1 := e.store.Refs()[0]
	e.clock.Advance(10 * time.Minute)
	b := e.open(t, "server-a", keymanager.Options{Holder: "bbbbbbbb", Logger: bufferLogger(&logB)})
	if got, _ := b.GetPublicKey(ctx, "x509-CA-A"); got.Fingerprint != first.Fingerprint {
		t.Fatalf("the second process serves %s, want the adopted %s", got.Fingerprint, first.Fingerprint)
	}

	// The first process rotates: the generation the second serves stays.
	e.clock.Advance(time.Minute)
	if _, err := a.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logA.String(), "another process holds a lease on it") })
	if !slices.Contains(e.store.Refs(), x1) {
		t.Fatalf("the first process retired %s, which the second serves", x1)
	}
	mustSign(t, b, "x509-CA-A")
	mustSign(t, a, "x509-CA-A")
	if !strings.Contains(logA.String(), "Another process is serving keys with this server's ID") || !strings.Contains(logA.String(), "other_holder=bbbbbbbb") {
		t.Errorf("the first process did not report the second:\n%s", logA.String())
	}

	// The second rotates too: it may not retire x1 at once (it cannot see
	// that the first moved on), but its cleanup pass can.
	e.clock.Advance(time.Minute)
	if _, err := b.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	mustSign(t, a, "x509-CA-A")
	mustSign(t, b, "x509-CA-A")
	as, err := b.Cleanup(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]keymanager.State{}
	for _, x := range as {
		states[x.Ref] = x.State
	}
	if states[x1] != keymanager.StateSuperseded {
		t.Errorf("x1 is %q to the second process after both moved on, want superseded: %v", states[x1], states)
	}
	if slices.Contains(e.store.Refs(), x1) {
		t.Errorf("x1 is still there after the second process's cleanup")
	}
	if _, err := a.Cleanup(ctx, true); err != nil {
		t.Fatal(err)
	}
	if n := len(e.store.Refs()); n != 2 {
		t.Errorf("%d generations left, want the 2 the processes serve: %v", n, e.store.Refs())
	}
	mustSign(t, a, "x509-CA-A")
	mustSign(t, b, "x509-CA-A")
}

// TestRestartKeepsPredecessorsGenerationUntilItsLeaseEnds restarts a server
// without a clean stop and rotates: the generation the dead process held is
// kept (it cannot be told from a live duplicate) until its lease ends, then
// a cleanup pass retires it; the restart is not reported as a duplicate.
// (A crash inside a rotation leaves nothing behind: the reliability suite's
// crash tests check it through the binary.)
func TestRestartKeepsPredecessorsGenerationUntilItsLeaseEnds(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, keymanager.Options{})
	if _, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	x1 := e.store.Refs()[0]
	e.clock.Advance(time.Minute)
	var logs syncbuf.Buffer
	m := e.open(t, "server-a", keymanager.Options{Logger: bufferLogger(&logs)})
	if _, err := m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	as, err := m.Cleanup(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Ref == x1 && (a.State != keymanager.StateHeld || a.HeldBy.Holder != e.m.Holder()) {
			t.Errorf("x1 is %s held by %q, want held by the dead process %s", a.State, a.HeldBy.Holder, e.m.Holder())
		}
	}
	if !slices.Contains(e.store.Refs(), x1) {
		t.Fatal("x1 was retired while the dead process's lease still counts")
	}
	if strings.Contains(logs.String(), "Another process is serving keys") {
		t.Errorf("a restart was reported as a duplicate:\n%s", logs.String())
	}
	e.clock.Advance(keymanager.LeaseTTL(keymanager.Schedule{}) + time.Minute)
	if _, err := m.Cleanup(ctx, true); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(e.store.Refs(), x1) {
		t.Errorf("x1 is still there after its lease ended")
	}

}

// TestPlanKeepsHeldGenerations checks that operator gc (Plan) keeps a
// superseded generation a process holds a live lease on, and retires it
// once the lease has ended or its holder moved on.
func TestPlanKeepsHeldGenerations(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ttl := keymanager.LeaseTTL(keymanager.Schedule{})
	gen := func(ref string, created time.Time, leases ...keymanager.Lease) keymanager.Generation {
		return keymanager.Generation{KeyID: "x", Ref: ref, ServerID: "me", Created: created, Updated: created, Leases: leases}
	}
	lease := func(holder, ref string, at time.Time) keymanager.Lease {
		return keymanager.Lease{Holder: holder, Ref: ref, Renewed: at}
	}
	tests := []struct {
		name string
		old  keymanager.Lease
		also []keymanager.Lease // on the newest generation
		want keymanager.State
	}{
		{name: "live lease", old: lease("b", "x1", now.Add(-time.Hour)), want: keymanager.StateHeld},
		{name: "lease ended", old: lease("b", "x1", now.Add(-ttl-time.Minute)), want: keymanager.StateSuperseded},
		{name: "holder moved on", old: lease("b", "x1", now.Add(-time.Hour)), also: []keymanager.Lease{lease("b", "x2", now.Add(-time.Minute))}, want: keymanager.StateSuperseded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gens := []keymanager.Generation{
				gen("x1", now.Add(-2*time.Hour), tt.old),
				gen("x2", now.Add(-time.Minute), append([]keymanager.Lease{lease("a", "x2", now.Add(-time.Minute))}, tt.also...)...),
			}
			for _, a := range keymanager.Plan(gens, "me", now, keymanager.Schedule{}) {
				if a.Ref != "x1" {
					continue
				}
				if a.State != tt.want || a.Retire != (tt.want == keymanager.StateSuperseded) {
					t.Errorf("x1 is %s (retire %v), want %s", a.State, a.Retire, tt.want)
				}
				if tt.want == keymanager.StateHeld && a.HeldBy.Holder != "b" {
					t.Errorf("held by %q, want b", a.HeldBy.Holder)
				}
			}
		})
	}
}

// TestCleanStopReleasesLeases stops a process cleanly: its successor, once
// it has superseded the generation the first one served, retires it at
// once instead of keeping it until the first one's lease ends.
func TestCleanStopReleasesLeases(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, keymanager.Options{})
	if _, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	x1 := e.store.Refs()[0]
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	m := e.open(t, "server-a", keymanager.Options{})
	if _, err := m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !slices.Contains(e.store.Refs(), x1) })
}
