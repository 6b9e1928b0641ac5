package engine_test

// Regression tests for the engine's defects in issue 15 (1, 2, 3, 6, 7 and
// 8; 4, 5, 9 and 10 are configuration defects, tested in config). Each
// comment says which behaviour of the old engine (before the one
// retirement rule) the test catches.

import (
	"context"
	"crypto"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestGCBesideRunningServerAfterFailedCreation is defect 1. A GenerateKey
// fails although the cloud made the key: the running server keeps serving
// x1. `gc --apply` run beside it (Plan and Recheck, every lease counting),
// and a second process started with the same server ID, must never retire
// x1, however long the server runs; the orphan x2 is retired once settled.
//
// The old engine's gc took the newest generation (the orphan x2) as the
// one in use and read the server's lease on x2, written by the failed
// creation, as "the holder moved on": it retired x1 at once, and the
// running server failed every signature. A second process's Load did the
// same and served the orphan. Without a lease on x2 (a Cloud KMS creation
// whose label update failed), the old "newer generation nobody holds" rule
// gave the same result.
func TestGCBesideRunningServerAfterFailedCreation(t *testing.T) {
	const id = "x509-CA-A"
	tests := []struct {
		name   string
		budget time.Duration
		// fail makes the next creation of id take effect and fail, and
		// returns whether the generation it leaves carries a pending lease.
		fail func(t *testing.T, e *env, a *engine.Manager) bool
	}{
		{"answer lost after the creation took effect", 0, func(t *testing.T, e *env, a *engine.Manager) bool {
			if err := e.store.InjectFault(memory.Fault{Op: "Create", Phase: memory.PhaseAfter, Code: codes.Unavailable, Count: 1}); err != nil {
				t.Fatal(err)
			}
			_, err := a.GenerateKey(context.Background(), id, engine.ECP256)
			wantCode(t, err, codes.Unavailable, "injected fault")
			return true
		}},
		{"answer after the budget", 200 * time.Millisecond, func(t *testing.T, e *env, a *engine.Manager) bool {
			// The creation takes effect, and its answer comes after the
			// call's budget (200 ms here).
			if err := e.store.InjectFault(memory.Fault{Op: "Create", Phase: memory.PhaseAfter, Latency: time.Minute, Count: 1}); err != nil {
				t.Fatal(err)
			}
			_, err := a.GenerateKey(context.Background(), id, engine.ECP256)
			wantCode(t, err, codes.DeadlineExceeded, "")
			return true
		}},
		{"made without any lease", 0, func(t *testing.T, e *env, a *engine.Manager) bool {
			// Laid out as a cloud that could not record the creation's
			// lease leaves it: a generation without leases, which the rule
			// takes as committed.
			e.setHook(func(_ context.Context, op, keyID string) error {
				if op == "Create" {
					e.addKey(t, "server-a", keyID, e.clock.Now(), e.clock.Now())
					return engine.Errorf(codes.Unavailable, "connection reset")
				}
				return nil
			})
			defer e.setHook(nil)
			_, err := a.GenerateKey(context.Background(), id, engine.ECP256)
			wantCode(t, err, codes.Unavailable, "connection reset")
			return false
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newFileEnv(t)
			a := e.open(t, "server-a", engine.Options{Holder: "aaaaaaaa", Budget: tt.budget})
			first := mustGenerate(t, a, id)
			x1 := e.refOf(t, first)
			e.clock.Advance(time.Hour)
			pendingOrphan := tt.fail(t, e, a)
			var x2 string
			for _, r := range e.store.Refs() {
				if r != x1 {
					x2 = r
				}
			}
			if x2 == "" {
				t.Fatal("the failed creation left no generation")
			}
			if got := e.gen(t, x2).Leases; pendingOrphan != (len(got) == 1 && got[0].Pending) {
				t.Fatalf("the orphan's leases = %+v", got)
			}
			if fp := mustSign(t, a, id); fp != first.Fingerprint {
				t.Fatal("the failed creation changed the served key")
			}

			// gc, and a second process, beside the running server, for two
			// days of its keep-alives and background work.
			var b *engine.Manager
			var prev time.Duration
			for step, at := range []time.Duration{0, time.Minute, settle + time.Minute, time.Hour + time.Minute, 6 * time.Hour, 12 * time.Hour, 18 * time.Hour, 24 * time.Hour, 30 * time.Hour, 36 * time.Hour, 42 * time.Hour, 48 * time.Hour} {
				e.clock.Advance(at - prev)
				prev = at
				if retired := e.gc(t, "server-a", e.clock.Now()); slices.Contains(retired, x1) {
					t.Fatalf("step %d (%v): gc retired x1, which the running server serves", step, at)
				}
				if step == 2 {
					b = e.open(t, "server-a", engine.Options{Holder: "bbbbbbbb"})
					want := x1
					if !pendingOrphan {
						want = x2 // committed by the rule: the newest
					}
					if got := e.served(t, b, id); got != want {
						t.Fatalf("the second process serves %s, want %s", got, want)
					}
				}
				for _, m := range []*engine.Manager{a, b} {
					if m == nil {
						continue
					}
					if err := m.KeepAlive(ctx); err != nil {
						t.Fatal(err)
					}
					m.RunDue(ctx)
					mustCleanup(t, m)
				}
				if step == 3 && b != nil {
					// The second process rotates: what it superseded, the
					// first still serves.
					mustGenerate(t, b, id)
				}
				if retired := e.gc(t, "server-a", e.clock.Now()); slices.Contains(retired, x1) {
					t.Fatalf("step %d (%v): gc retired x1, which the running server serves", step, at)
				}
				if !e.has(x1) {
					t.Fatalf("step %d (%v): x1, which the running server serves, was retired", step, at)
				}
				if fp := mustSign(t, a, id); fp != first.Fingerprint {
					t.Fatalf("step %d: the running server signs with %s", step, fp)
				}
				if b != nil {
					mustSign(t, b, id)
				}
			}
			if pendingOrphan && e.has(x2) {
				t.Errorf("the orphan %s of the failed creation is still there after two days", x2)
			}
		})
	}
}

// TestSameServerIDStartedTogether is defect 2. Two processes with one
// server ID start at once: both list x1 before either records its lease,
// and the memory backend's KeepAlive, like Key Vault's tag update and Cloud
// KMS's label update, rewrites the whole lease record, so the second write
// drops the first one's lease. The read-back two budgets later restores it;
// from then on neither process retires what the other serves, through
// rotations on both and days of background work, nor does gc.
//
// The old engine wrote each lease once and never read it back: the
// survivor's next rotation found no other lease on x1 and retired it while
// the other process still served it.
func TestSameServerIDStartedTogether(t *testing.T) {
	const id = "x509-CA-A"
	ctx := context.Background()
	e := newEnv(t)
	// x1 was served by a process that stopped cleanly: no lease on it.
	prev := e.open(t, "server-a", engine.Options{})
	x1 := e.refOf(t, mustGenerate(t, prev, id))
	if err := prev.Close(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)

	// Both list before either writes its lease.
	var lists sync.WaitGroup
	lists.Add(2)
	listed := make(chan struct{})
	go func() { lists.Wait(); close(listed) }()
	e.setHook(func(ctx context.Context, op, _ string) error {
		switch op {
		case "List":
			lists.Done()
		case "KeepAlive":
			select {
			case <-listed:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	ms := []*engine.Manager{
		e.newManager(t, "server-a", engine.Options{Holder: "aaaaaaaa"}),
		e.newManager(t, "server-a", engine.Options{Holder: "bbbbbbbb"}),
	}
	errs := make(chan error, 2)
	for _, m := range ms {
		go func() { errs <- m.Load(ctx) }()
	}
	for range ms {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	e.setHook(nil)
	for _, m := range ms {
		if got := e.served(t, m, id); got != x1 {
			t.Fatalf("%s serves %s, want x1 %s", m.Holder(), got, x1)
		}
	}
	holders := e.holders(t, x1)
	if len(holders) != 1 {
		t.Fatalf("leases on x1 after both claims = %v; want one (the second write dropped the first)", holders)
	}
	winner, loser := ms[0], ms[1]
	if holders[0] != winner.Holder() {
		winner, loser = loser, winner
	}

	// The read-back is due two budgets after the write.
	e.clock.Advance(leaseCheck - time.Second)
	loser.RunDue(ctx)
	if got := e.holders(t, x1); len(got) != 1 {
		t.Fatalf("the lease was restored before the read-back fell due: %v", got)
	}
	e.clock.Advance(time.Second)
	for _, m := range ms {
		m.RunDue(ctx)
	}
	if got := e.holders(t, x1); !slices.Equal(got, []string{"aaaaaaaa", "bbbbbbbb"}) {
		t.Fatalf("leases on x1 after the read-backs = %v, want both", got)
	}

	// The winner rotates; x1, which the loser serves, stays.
	e.clock.Advance(time.Minute)
	x2 := e.refOf(t, mustGenerate(t, winner, id))
	livenessStep(t, e, settle+time.Hour, ms...)
	checkServed := func(when string) {
		t.Helper()
		for _, m := range ms {
			pk, err := m.GetPublicKey(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if ref := e.refOf(t, pk); !e.has(ref) {
				t.Fatalf("%s: the generation %s that %s serves was retired", when, ref, m.Holder())
			}
			if fp := mustSign(t, m, id); fp != pk.Fingerprint {
				t.Fatalf("%s: %s signs with %s, serves %s", when, m.Holder(), fp, pk.Fingerprint)
			}
		}
		if retired := e.gc(t, "server-a", e.clock.Now()); len(retired) > 0 {
			for _, m := range ms {
				if slices.Contains(retired, e.served(t, m, id)) {
					t.Fatalf("%s: gc retired what %s serves", when, m.Holder())
				}
			}
		}
	}
	checkServed("after the winner's rotation")
	if !e.has(x1) {
		t.Fatal("x1 was retired while the loser serves it")
	}

	// The loser rotates; x2, which the winner serves, stays.
	x3 := e.refOf(t, mustGenerate(t, loser, id))
	livenessStep(t, e, settle+time.Hour, ms...)
	checkServed("after the loser's rotation")
	// Days of background work: what each serves stays; x1, which neither
	// serves any more, goes once the leases on it have ended.
	livenessStep(t, e, engine.LeaseTTL(engine.Schedule{})+engine.DefaultLivenessInterval, ms...)
	checkServed("days later")
	if !e.has(x2) || !e.has(x3) {
		t.Fatalf("a served generation was retired: %v", e.store.Refs())
	}
	if e.has(x1) {
		t.Errorf("x1 is still there after its leases ended")
	}
}

// TestReadBackSurvivesCleanupDuringCreation belongs with defect 2: a
// lease dropped by a concurrent rewrite must never go unnoticed. A cleanup
// pass runs while this process is between its Create and its commit: the
// new generation x1 is pending, so the pass schedules its retirement.
// Meanwhile another process with the server ID read x1's record before the
// commit and writes it back after (a clean stop's release, as the record
// was), dropping the committed lease: x1 carries only the pending lease of
// its creation again, so by the rule it was never committed, and gc may
// retire it an hour after its creation. The read-back after the commit
// must run and restore the lease.
//
// Found while writing these tests: the engine kept the scheduled
// retirement (which only found x1 in use) in place of the commit's lease
// read-back, so the lease stayed lost until the next keep-alive, a day
// later, and gc retired the key the process served.
func TestReadBackSurvivesCleanupDuringCreation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	other := e.store.Backend(td, "server-a")
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.setHook(func(ctx context.Context, op, _ string) error {
		if op == "KeepAlive" {
			once.Do(func() { close(entered); <-release })
		}
		return nil
	})
	done := make(chan error)
	go func() { _, err := m.GenerateKey(ctx, "k", engine.ECP256); done <- err }()
	<-entered
	as := mustCleanup(t, m)
	if len(as) != 1 || as[0].State != engine.StateSettling {
		t.Fatalf("assessment during the creation = %+v", as)
	}
	x1 := as[0].Ref
	read, err := other.Refresh(ctx, as[0].Generation)
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := other.KeepAlive(ctx, read); err != nil {
		t.Fatal(err)
	}
	if got := e.holders(t, x1); len(got) != 0 {
		t.Fatalf("committed leases on x1 = %v; the rewrite should have dropped the commit", got)
	}

	e.clock.Advance(leaseCheck)
	m.RunDue(ctx)
	if got := e.holders(t, x1); len(got) != 1 || got[0] != m.Holder() {
		t.Fatalf("committed leases on x1 after the read-back = %v, want this process's", got)
	}
	for _, after := range []time.Duration{time.Hour, 6 * time.Hour} {
		e.clock.Advance(after)
		if retired := e.gc(t, "server-a", e.clock.Now()); slices.Contains(retired, x1) {
			t.Fatalf("gc retired x1, which the process serves, %v later", after)
		}
	}
	mustSign(t, m, "k")
}

// gatedCreate is a backend whose first Create (once armed) takes effect and
// then holds its answer until released: the hook runs before an operation
// takes effect, so it cannot hold an answer.
type gatedCreate struct {
	*memory.Backend
	mu    sync.Mutex
	armed bool
	made  chan string // the held creation's ref
	send  chan struct{}
}

func (g *gatedCreate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.made, g.send = true, make(chan string, 1), make(chan struct{})
}

func (g *gatedCreate) Create(ctx context.Context, req engine.CreateRequest) (engine.Generation, error) {
	gen, err := g.Backend.Create(ctx, req)
	g.mu.Lock()
	held := g.armed
	g.armed = false
	made, send := g.made, g.send
	g.mu.Unlock()
	if held {
		made <- gen.Ref
		<-send
	}
	return gen, err
}

// TestConcurrentGenerateKeyNewestWins is defect 3. Two GenerateKey calls on
// one key ID: the one that started first creates x1 first, and its answer
// arrives after the second call has created, committed and returned x2.
// The newest creation (by creation time, then ref) is served, both calls
// return it, and a restart, even one before any retirement, serves it
// too. The older creation is retired once settled.
//
// The old engine served whichever answer came last: it swapped x1 in,
// returned x1 to the first call after the second had been given x2, and
// retired x2; a restart before that retirement served x2, a different key
// from the one served last.
func TestConcurrentGenerateKeyNewestWins(t *testing.T) {
	const id = "JWT-Signer-A"
	tests := []struct {
		name string
		gap  time.Duration // between the two creations, in the cloud
	}{
		{"created a second apart", time.Second},
		{"created at the same time: the ref decides", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			b := &gatedCreate{Backend: e.store.Backend(td, "server-a")}
			m := e.open(t, "server-a", engine.Options{Backend: b})
			x0 := e.refOf(t, mustGenerate(t, m, id))
			e.clock.Advance(time.Hour)

			b.arm()
			firstDone := make(chan engine.PublicKey, 1)
			go func() {
				pk, err := m.GenerateKey(ctx, id, engine.ECP256)
				if err != nil {
					t.Error(err)
				}
				firstDone <- pk
			}()
			x1 := <-b.made
			e.clock.Advance(tt.gap)
			second := mustGenerate(t, m, id)
			x2 := e.refOf(t, second)
			if x2 <= x1 && tt.gap == 0 {
				t.Fatalf("refs %s, %s: the later creation should have the higher ref", x1, x2)
			}
			close(b.send)
			first := <-firstDone
			if first.Fingerprint != second.Fingerprint {
				t.Fatalf("the first call returned %s, the second %s: both must return the newest key", first.Fingerprint, second.Fingerprint)
			}
			if got := e.served(t, m, id); got != x2 {
				t.Fatalf("serves %s, want the newest creation %s", got, x2)
			}
			if fp := mustSign(t, m, id); fp != second.Fingerprint {
				t.Fatal("signs with another key than the one served")
			}

			// A restart before anything is retired (the first process
			// crashed) serves the same key.
			n := e.open(t, "server-a", engine.Options{})
			if got := e.served(t, n, id); got != x2 {
				t.Fatalf("after a restart: serves %s, want %s", got, x2)
			}

			// The background work retires x0 and x1 once settled, never x2.
			e.clock.Advance(settle + time.Minute)
			m.RunDue(ctx)
			e.clock.Advance(time.Second)
			m.RunDue(ctx)
			mustCleanup(t, m)
			if !e.has(x2) {
				t.Fatal("the newest creation was retired")
			}
			for _, r := range []string{x0, x1} {
				if e.has(r) && !slices.Contains(e.holders(t, r), n.Holder()) {
					t.Errorf("%s is still there, and no other process holds it", r)
				}
			}
			if fp := mustSign(t, m, id); fp != second.Fingerprint {
				t.Fatal("the served key changed")
			}
			mustSign(t, n, id)
		})
	}
}

// TestCleanupWaitsForInFlightSignature is defect 6. A process served x1
// for hours; meanwhile another process with its server ID rotated to x2 and
// stopped cleanly, so that by the retirement rule alone x1 is settled as
// soon as this process stops serving it. This process rotates to x3 while a
// signature with x1 is in flight, and a cleanup pass runs: x1 is kept until
// the signature completes, or until the budget has passed (the call is
// then over, whatever its answer).
//
// The old engine's retirement after a rotation waited for in-flight
// signatures, but its cleanup pass retired a superseded generation at once:
// the signature in flight failed.
func TestCleanupWaitsForInFlightSignature(t *testing.T) {
	const id = "x509-CA-A"
	tests := []struct {
		name string
		// end ends the signature's protection: it completes, or the
		// budget passes.
		end          func(e *env, release func())
		signatureErr codes.Code
	}{
		{"the signature completes", func(e *env, release func()) { release() }, codes.OK},
		{"the budget passes", func(e *env, release func()) { e.clock.Advance(engine.DefaultBudget) }, codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			m := e.open(t, "server-a", engine.Options{})
			old := mustGenerate(t, m, id)
			x1 := e.refOf(t, old)
			e.clock.Advance(time.Minute)
			other := e.open(t, "server-a", engine.Options{})
			mustGenerate(t, other, id)
			if err := other.Close(); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(2 * time.Hour)

			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			e.setHook(func(ctx context.Context, op, _ string) error {
				if op == "Sign" {
					once.Do(func() { close(entered); <-release })
				}
				return nil
			})
			done := make(chan error, 1)
			go func() {
				_, fp, err := m.SignData(ctx, id, digest(crypto.SHA256, "x"), crypto.SHA256)
				if err == nil && fp != old.Fingerprint {
					err = errors.New("signed with another key than x1")
				}
				done <- err
			}()
			<-entered
			mustGenerate(t, m, id)
			for _, a := range mustCleanup(t, m) {
				if a.Ref == x1 && a.State != engine.StateInUse {
					t.Errorf("x1 is %s during the signature, want in use", a.State)
				}
			}
			m.RunDue(ctx)
			if !e.has(x1) {
				t.Fatal("x1 was retired while a signature with it was in flight")
			}

			releaseOnce := sync.OnceFunc(func() { close(release) })
			defer releaseOnce()
			tt.end(e, releaseOnce)
			var signErr error
			if tt.signatureErr == codes.OK {
				if signErr = <-done; signErr != nil {
					t.Fatalf("the in-flight signature: %v", signErr)
				}
			}
			st := states(mustCleanup(t, m))
			if st[x1] != engine.StateSuperseded || e.has(x1) {
				t.Fatalf("x1 is %s and still there: once the signature's protection ended, cleanup retires it", st[x1])
			}
			releaseOnce()
			if tt.signatureErr != codes.OK {
				signErr = <-done
			}
			if engine.Code(signErr) != tt.signatureErr {
				t.Fatalf("the in-flight signature = %v, want %v", signErr, tt.signatureErr)
			}
		})
	}
}

// TestCreationBoundAcrossRestarts is defect 7. A server in a crash loop
// (or one that a supervisor restarts cleanly every time) prepares a key at
// each start: across all its processes, the cloud never holds more than
// MaxCreationsPerHour creations of one key ID within an hour, even once
// the superseded generations have been retired (the settle period is six
// seconds here, so they are, and the listing alone cannot count them).
//
// The old engine counted only the creations a restart could still list:
// with the superseded generations retired, each restart could create again.
func TestCreationBoundAcrossRestarts(t *testing.T) {
	const (
		id       = "x509-CA-A"
		maxPerHr = 3
	)
	tests := []struct {
		name  string
		clean bool // Close each process (releasing its leases) instead of dropping it
	}{
		{"crash loop", false},
		{"clean restarts", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			var mu sync.Mutex
			var created []time.Time
			e.setHook(func(_ context.Context, op, _ string) error {
				if op == "Create" {
					mu.Lock()
					created = append(created, e.clock.Now())
					mu.Unlock()
				}
				return nil
			})
			refused := 0
			for range 2 * 3600 / 15 {
				opts := engine.Options{MaxCreationsPerHour: maxPerHr, Budget: time.Second, Settle: time.Second}
				opts.Backend = e.store.Backend(td, "server-a")
				opts.ServerID = "server-a"
				opts.Clock = e.clock
				m, err := engine.New(opts)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.Load(ctx); err != nil {
					t.Fatal(err)
				}
				m.RunDue(ctx)
				if _, err := m.Cleanup(ctx, true); err != nil {
					t.Fatal(err)
				}
				if _, err := m.GenerateKey(ctx, id, engine.ECP256); engine.Code(err) == codes.ResourceExhausted {
					refused++
				} else if err != nil {
					t.Fatal(err)
				}
				if tt.clean {
					m.Close()
				}
				e.clock.Advance(15 * time.Second)
			}
			mu.Lock()
			defer mu.Unlock()
			checkHourlyBound(t, created, maxPerHr)
			if len(created) < maxPerHr || refused == 0 {
				t.Fatalf("%d creations, %d refusals: the loop did not test the bound", len(created), refused)
			}
			if tt.clean && len(e.store.Refs()) > 2 {
				t.Errorf("%d generations left: the superseded ones were not retired, so the listing could count them", len(e.store.Refs()))
			}
		})
	}
}

// TestStalenessOnTheCloudsClock is defect 8. The host clock runs 15 days
// ahead of, or behind, the cloud's. A peer server's key kept alive an hour
// ago by the cloud's clock is foreign, never stale, to the engine's
// cleanup and to gc run on that host; a peer gone for 15 days by the
// cloud's clock is stale either way.
//
// The old engine corrected only a host clock running behind (from the
// creation times it listed): with the host 15 days ahead, the live peer's
// key looked 15 days unwritten and was retired.
func TestStalenessOnTheCloudsClock(t *testing.T) {
	const day = 24 * time.Hour
	for _, skew := range []time.Duration{15 * day, -15 * day} {
		t.Run("host "+skewName(skew), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t) // e.clock is the cloud's
			host := skewedClock{base: e.clock, off: skew}
			cloud := e.clock.Now()
			alive := e.addKey(t, "server-b", "x509-CA-A", cloud.Add(-30*day), cloud.Add(-time.Hour))
			gone := e.addKey(t, "server-c", "x509-CA-A", cloud.Add(-30*day), cloud.Add(-15*day))
			m := e.open(t, "server-a", engine.Options{Clock: host})
			mustGenerate(t, m, "x509-CA-A")
			for i := range 4 {
				if i > 0 {
					e.clock.Advance(6 * time.Hour)
					if err := m.KeepAlive(ctx); err != nil {
						t.Fatal(err)
					}
					m.RunDue(ctx)
				}
				if retired := e.gc(t, "server-a", host.Now()); slices.Contains(retired, alive) {
					t.Fatalf("gc on the host retired the live peer's key")
				}
				st := states(mustCleanup(t, m))
				if !e.has(alive) {
					t.Fatalf("pass %d: the live peer's key was retired (it was %s)", i, st[alive])
				}
				if i == 0 && st[alive] != engine.StateForeign {
					t.Fatalf("the live peer's key is %s, want foreign", st[alive])
				}
				if e.has(gone) {
					t.Fatalf("pass %d: the key of a peer gone for 15 days is still there (%s)", i, st[gone])
				}
			}
			mustSign(t, m, "x509-CA-A")
		})
	}
}

func skewName(d time.Duration) string {
	if d > 0 {
		return "ahead"
	}
	return "behind"
}
