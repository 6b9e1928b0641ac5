package reliability

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// gcServer is the server ID of TestGCBesideRunningServer.
const gcServer = "server-g"

// orphanCase is a GenerateKey whose creation takes effect in the cloud and
// which fails all the same: the orphan it leaves is a generation the
// running plugin never served.
type orphanCase struct {
	name string
	// lose arranges the failure of the next GenerateKey on h's vault.
	lose func(t *testing.T, h *harness)
	// pending is set when the orphan carries its creator's pending lease
	// (the creation's lease record was written, its commit was not); unset
	// when it carries no lease at all (Cloud KMS records the creation's
	// lease in a label update after the version is made and read).
	pending bool
}

// orphanCases lists the ways setup name's cloud can make a key for a
// GenerateKey that fails.
func orphanCases(name string) []orphanCase {
	switch name {
	case "memory":
		return []orphanCase{{
			// The store makes the key and its answer comes after the
			// call's budget.
			name:    "answer after the budget",
			lose:    func(t *testing.T, h *harness) { h.v.hold(t, opCreate, true, time.Hour) },
			pending: true,
		}}
	case "azure":
		return []orphanCase{{
			// CreateKey makes the key, with its creator's pending lease
			// in its tags, and its answer is damaged on the way: as
			// good as lost.
			name: "answer lost",
			lose: func(t *testing.T, h *harness) {
				h.v.(*azureVault).srv.InjectFault(keyvault.Fault{Op: "CreateKey", Malform: keyvault.MalformKeyID, Count: 1})
			},
			pending: true,
		}}
	case "gcp":
		return []orphanCase{{
			// The version is made and its pending lease recorded (the
			// first label update goes through); the commit, the next
			// label update, is held past the call's budget.
			name: "commit after the budget",
			lose: func(t *testing.T, h *harness) {
				srv := h.v.(*gcpVault).srv
				srv.InjectFault(cloudkms.Fault{Method: "UpdateCryptoKey", Times: 1})
				srv.InjectFault(cloudkms.Fault{Method: "UpdateCryptoKey", Latency: time.Hour, Times: 1})
			},
			pending: true,
		}, {
			// The version is made and reading its public key is held
			// past the budget: the label update that records the
			// creator's lease is never sent (issue 15: "a creation whose
			// label update fails leaves x2 with no lease").
			name:    "no lease recorded",
			lose:    func(t *testing.T, h *harness) { h.v.hold(t, opCreate, true, time.Hour) },
			pending: false,
		}}
	}
	return nil
}

// TestGCBesideRunningServer is issue 15's defect 1, through the built
// binary. A running plugin serves x1 of a key ID; a GenerateKey fails
// although the cloud made the key, leaving an orphan x2. The operator runs
// `kmskeeper gc --apply` with the server's own configuration at several
// moments, each time before the plugins' passes have seen the cloud's new
// time: at once; beside a second plugin process started with the same
// server ID, past the settle period; past the hour an uncommitted creation
// is kept; after the second process rotated (x1 is then no longer its key
// ID's newest and only the first process's lease keeps it); and through
// three days of the cloud's clock in 36-hour steps (more than the 72 h
// lease period, which only the first process's keep-alives bridge). gc never
// retires x1, neither does the second process, and the first keeps signing
// with x1 throughout. The orphan is retired once it has settled; once the
// first process stops cleanly, x1 settles and goes too.
//
// The old engine's gc took the newest generation (x2) as the one in use,
// read the server's pending lease on x2 as "the holder moved on", and
// retired x1; a second process's start did the same.
//
// On Cloud KMS a creation interrupted before its label update leaves x2
// with no lease at all, which the retirement rule cannot tell from a key
// made before leases existed and takes as committed ("no lease recorded"):
// x2 is then its key ID's current generation, the second process adopts it,
// and x1 is kept by the first process's lease alone.
func TestGCBesideRunningServer(t *testing.T) {
	t.Parallel() // a waiting scenario (doc.go)
	var runs []subtest
	for _, s := range setups() {
		for _, oc := range orphanCases(s.name) {
			runs = append(runs, subtest{s.name + "/" + oc.name, func(t *testing.T) { runGCBeside(t, s, oc) }})
		}
	}
	runConcurrently(t, len(runs), runs)
}

func runGCBeside(t *testing.T, s setup, oc orphanCase) {
	const id = "x509-CA-A"
	h := newHarness(t, s)
	data := h.v.pluginData(gcServer, faultPassesExtra)
	p1 := h.start(gcServer, faultPassesExtra)
	x1 := h.mustGenerate(p1, id)
	// The first process's lease on x1, the one committed lease on it.
	x1Leases := committedLeases(mustHaveGen(t, h, gcServer, x1, ""))
	if len(x1Leases) != 1 {
		t.Fatalf("x1 carries the committed leases %+v, want its creator's", x1Leases)
	}
	p1Holder := x1Leases[0].Holder
	signer := signWhile(t, h, p1, x1)

	oc.lose(t, h)
	ctx, cancel := context.WithTimeout(t.Context(), suite.lastingDeadline())
	pk, err := p1.GenerateKey(ctx, id, engine.ECP256)
	cancel()
	if h.record(err) == nil {
		t.Fatalf("GenerateKey answered %s; the fault was to fail it", pk.Fingerprint)
	}
	h.v.clear(t)
	var x2 key
	for _, k := range own(h.v.keys(t), gcServer) {
		if k.Fingerprint != x1.Fingerprint {
			if x2.Ref != "" {
				t.Fatalf("the failed GenerateKey left %s and %s", x2.Ref, k.Ref)
			}
			x2 = k
		}
	}
	switch {
	case x2.Ref == "":
		t.Fatalf("the failed GenerateKey (%v) left no generation in the cloud", err)
	case oc.pending && !pendingGen(x2):
		t.Fatalf("the orphan %s carries the leases %+v, want its creator's pending lease only", x2.Ref, x2.Leases)
	case !oc.pending && len(x2.Leases) != 0:
		t.Fatalf("the orphan %s carries the leases %+v, want none", x2.Ref, x2.Leases)
	}
	orphan := engine.PublicKey{ID: id, Fingerprint: x2.Fingerprint}

	// What gc must say of x1 and x2: x1 is kept, as its key ID's current
	// generation or as held by the first process's lease.
	x1State, x2State := engine.StateCurrent, engine.StateSettling
	if !oc.pending {
		x1State, x2State = engine.StateHeld, engine.StateCurrent
	}
	x1Ref := mustHaveGen(t, h, gcServer, x1, "").Ref
	gc := func(when string) {
		t.Helper()
		listed := false
		for _, r := range h.gc(t, data, "--apply") {
			switch r.Ref {
			case x1Ref:
				listed = true
				if r.Cleanup != "keep" || r.State != string(x1State) {
					t.Errorf("gc --apply %s: x1 %s is %q, cleanup %q; want %q, keep", when, r.Ref, r.State, r.Cleanup, x1State)
				}
			case x2.Ref:
				if x2State != "" && (r.State != string(x2State) || r.Cleanup != "keep") {
					t.Errorf("gc --apply %s: the orphan %s is %q, cleanup %q; want %q, keep", when, r.Ref, r.State, r.Cleanup, x2State)
				}
			}
		}
		if !listed {
			t.Errorf("gc --apply %s did not list x1 %s", when, x1Ref)
		}
		mustHaveGen(t, h, gcServer, x1, "gc retired it "+when)
		if got := mustGetPublicKey(t, h, p1, id); got.Fingerprint != x1.Fingerprint {
			t.Fatalf("%s the running plugin serves %s, want x1 %s", when, got.Fingerprint, x1.Fingerprint)
		}
		signer.check(when)
	}
	gc("right after the failed GenerateKey")

	// A second process with the same server ID adopts the newest committed
	// generation: x1, or the lease-less x2 that the rule takes as committed.
	p2 := h.start(gcServer, faultPassesExtra)
	adopted := x1
	if !oc.pending {
		adopted = orphan
	}
	if got := mustGetPublicKey(t, h, p2, id); got.Fingerprint != adopted.Fingerprint {
		t.Fatalf("the second process serves %s, want %s", got.Fingerprint, adopted.Fingerprint)
	}
	if err := h.sign(callCtx(t), p2, mustGetPublicKey(t, h, p2, id)); err != nil {
		t.Errorf("the second process signing: %v", err)
	}
	both := map[string]*pluginhost.Plugin{"first": p1, "second": p2}
	// The plugins' passes, after which the first process has renewed its
	// lease on x1 (its liveness pass keeps x1 alive once a day).
	passes := func(when string) {
		t.Helper()
		waitAllPasses(t, both)
		waitVault(t, "the first process to renew its lease on x1 "+when, func() bool {
			now := h.v.now(t)
			for _, l := range committedLeases(mustHaveGen(t, h, gcServer, x1, "a plugin retired it "+when)) {
				if l.Holder == p1Holder && now.Sub(l.Renewed) <= engine.DefaultKeepAliveAge {
					return true
				}
			}
			return false
		})
		signer.check(when)
	}
	passes("beside a second process with the same server ID")

	// Past the settle period, gc before the plugins' passes have seen the
	// cloud's new time: an orphan that never committed is still its key
	// ID's newest, which is kept for an hour.
	h.v.advance(t, settlePast)
	gc("past the settle period")
	passes("past the settle period")
	mustHaveGen(t, h, gcServer, orphan, "retired within the hour an uncommitted creation is kept while its key ID's newest")

	// Past that hour the orphan has settled: gc, or a cleanup pass, retires
	// it. A lease-less orphan is current and kept.
	h.v.advance(t, orphanPast-settlePast)
	if oc.pending {
		x2State = "" // retired, by gc or a cleanup pass
	}
	gc("past the hour")
	passes("past the hour")
	if oc.pending {
		mustBeGone(t, h, gcServer, orphan, "it settled: superseded, never committed, unwritten for the settle period and older than an hour")
	} else {
		mustHaveGen(t, h, gcServer, orphan, "it is the current generation the second process serves")
	}

	// The second process rotates: x1 is no longer its key ID's newest, and
	// only the first process's lease keeps it, which the first process's
	// keep-alives must renew for as long as it runs.
	x3 := h.mustGenerate(p2, id)
	x1State = engine.StateHeld
	if !oc.pending {
		x2State = "" // superseded by x3: kept while it settles
	}
	gc("after the second process rotated")
	for range 2 {
		h.v.advance(t, 36*time.Hour)
		gc("36 hours later")
		passes("36 hours later")
		if err := h.sign(callCtx(t), p2, x3); err != nil {
			t.Errorf("the second process signing with its new key: %v", err)
		}
	}
	signer.stop()

	// The first process stops cleanly and releases its lease; the second
	// ends its own on x1, which it no longer serves. Past the settle
	// period, x1 (and a lease-less orphan, superseded by x3) are retired
	// and only x3 is left.
	if err := p1.Close(); err != nil {
		t.Errorf("stopping the first process: %v", err)
	}
	waitUnleased(t, h, gcServer, x1.Fingerprint)
	waitUnleased(t, h, gcServer, orphan.Fingerprint)
	h.v.advance(t, settlePast)
	h.gc(t, data, "--apply")
	waitVault(t, "only x3 to be left", func() bool {
		left := own(h.v.keys(t), gcServer)
		return len(left) == 1 && left[0].Fingerprint == x3.Fingerprint
	})
	servesExactly(t, h, p2, x3)
}

// backgroundSigner signs with one key in the background and records the
// first failure.
type backgroundSigner struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan struct{}
	signed atomic.Int64

	mu  sync.Mutex
	err error
}

// signWhile signs with pk through p every 50 ms until stop.
func signWhile(t *testing.T, h *harness, p *pluginhost.Plugin, pk engine.PublicKey) *backgroundSigner {
	ctx, cancel := context.WithCancel(t.Context())
	s := &backgroundSigner{t: t, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
			err := h.sign(sctx, p, pk)
			scancel()
			if err != nil {
				if ctx.Err() == nil {
					s.mu.Lock()
					if s.err == nil {
						s.err = err
					}
					s.mu.Unlock()
				}
			} else {
				s.signed.Add(1)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(s.stop)
	return s
}

// check fails the test if a signature failed so far.
func (s *backgroundSigner) check(when string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		s.t.Fatalf("%s: the running plugin failed a signature: %v", when, s.err)
	}
}

// stop ends the signing and checks that signatures were made and none
// failed.
func (s *backgroundSigner) stop() {
	s.t.Helper()
	select {
	case <-s.done:
		return
	default:
	}
	s.cancel()
	<-s.done
	s.check("until the end")
	if s.signed.Load() == 0 {
		s.t.Error("the running plugin made no signature in the background")
	}
}
