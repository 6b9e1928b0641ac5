package reliability

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// faultServer is the server ID of the fault scenarios.
const faultServer = "server-f"

// faultExtra lifts the creation guard, which the fault scenarios would
// otherwise reach by design (every failed creation counts).
const faultExtra = "max_key_creations_per_hour = 360\n"

// TestFaults injects each cloud fault into signing and key creation, once
// transient and once lasting past the budget: a transient fault is absorbed
// (by the backend's retries) or reported with the cause's code; a lasting one
// is reported with the documented code; afterwards the same process serves
// the same keys and works on, without a restart.
func TestFaults(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		var runs []subtest
		for _, kind := range faultKinds {
			runs = append(runs,
				subtest{"SignData/" + string(kind) + "/transient", func(t *testing.T) { signFault(t, s, kind, false) }},
				subtest{"SignData/" + string(kind) + "/lasting", func(t *testing.T) { signFault(t, s, kind, true) }},
				subtest{"GenerateKey/" + string(kind) + "/lasting", func(t *testing.T) { createFault(t, s, kind) }},
			)
		}
		runs = append(runs,
			subtest{"SignData/slow answer within the budget", func(t *testing.T) { slowSign(t, s, false) }},
			subtest{"SignData/slow answer past the deadline", func(t *testing.T) { slowSign(t, s, true) }},
		)
		runConcurrently(t, 4, runs)
	})
}

// transientCount is how many requests a transient fault fails.
const transientCount = 2

func signFault(t *testing.T, s setup, kind faultKind, lasting bool) {
	h := newHarness(t, s)
	p := h.start(faultServer, faultExtra)
	pk := h.mustGenerate(p, "x509-CA-A")
	want := h.v.persistentCode(kind)

	if !lasting {
		h.v.inject(t, opSign, kind, transientCount)
		attempts := 1
		if !h.v.absorbs(opSign, kind) {
			// Nothing absorbs the fault: each request it fails is one
			// SignData failing with the cause's code.
			attempts = transientCount + 1
		}
		var err error
		for i := range attempts {
			err = h.sign(callCtx(t), p, pk)
			if i < attempts-1 && status.Code(err) != want {
				t.Errorf("SignData during the fault (attempt %d) = %v, want %v", i+1, err, want)
			}
		}
		if err != nil {
			t.Fatalf("SignData once a transient %s cleared = %v, want a signature", kind, err)
		}
		checkAdvised(t, h, p, opSign, kind)
	} else {
		h.v.inject(t, opSign, kind, 0)
		// A lasting fault must be reported before the caller's deadline.
		ctx, cancel := context.WithTimeout(t.Context(), suite.lastingDeadline())
		defer cancel()
		err := h.sign(ctx, p, pk)
		if status.Code(err) != want {
			t.Errorf("SignData under a lasting %s = %v, want %v", kind, err, want)
		}
		h.v.clear(t)
	}
	stillWorks(t, h, p, pk)
}

// advisedRetries is a vault whose throttling answers advise when to retry
// and which records when each request arrived (Cloud KMS's RetryInfo).
type advisedRetries interface {
	// checkAdvisedWait checks that every request of o a throttle advising
	// a delay answered was retried no sooner than advised.
	checkAdvisedWait(t *testing.T, p *pluginhost.Plugin, o op)
}

// checkAdvised checks, where the vault can tell, that p retried a transient
// "429 with Retry-After" on o no sooner than the answer advised.
func checkAdvised(t *testing.T, h *harness, p *pluginhost.Plugin, o op, kind faultKind) {
	t.Helper()
	if a, ok := h.v.(advisedRetries); ok && kind == throttledRetryAfter {
		a.checkAdvisedWait(t, p, o)
	}
}

func createFault(t *testing.T, s setup, kind faultKind) {
	h := newHarness(t, s)
	p := h.start(faultServer, faultExtra)
	pk := h.mustGenerate(p, "x509-CA-A")
	h.v.inject(t, opCreate, kind, 0)
	ctx, cancel := context.WithTimeout(t.Context(), suite.lastingDeadline())
	defer cancel()
	_, err := p.GenerateKey(ctx, "x509-CA-A", engine.ECP256)
	if status.Code(h.record(err)) != h.v.persistentCode(kind) {
		t.Errorf("GenerateKey under a lasting %s = %v, want %v", kind, err, h.v.persistentCode(kind))
	}
	h.v.clear(t)
	stillWorks(t, h, p, pk)
}

func slowSign(t *testing.T, s setup, pastDeadline bool) {
	h := newHarness(t, s)
	p := h.start(faultServer, faultExtra)
	pk := h.mustGenerate(p, "JWT-Signer-A")
	if !pastDeadline {
		h.v.slow(t, opSign, 500*time.Millisecond)
		if err := h.sign(callCtx(t), p, pk); err != nil {
			t.Errorf("SignData with a slow answer within the budget = %v, want a signature", err)
		}
		h.v.clear(t)
		stillWorks(t, h, p, pk)
		return
	}
	h.v.slow(t, opSign, time.Hour)
	// A caller deadline of 5 s: the plugin must answer before it, saying
	// that the cloud did not answer in time.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := h.sign(ctx, p, pk)
	if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
		t.Errorf("SignData with an answer slower than the deadline = %v, want DeadlineExceeded or Unavailable before the caller's deadline", err)
	}
	h.v.clear(t)
	stillWorks(t, h, p, pk)
}

// stillWorks checks that p serves pk unchanged, signs with it, and can
// rotate it: the fault left no trace in the process.
func stillWorks(t *testing.T, h *harness, p *pluginhost.Plugin, pk engine.PublicKey) {
	t.Helper()
	got, err := p.GetPublicKey(callCtx(t), pk.ID)
	if err != nil || got.Fingerprint != pk.Fingerprint {
		t.Fatalf("after the fault GetPublicKey(%s) = %s, %v; want %s", pk.ID, got.Fingerprint, h.record(err), pk.Fingerprint)
	}
	if err := h.sign(callCtx(t), p, pk); err != nil {
		t.Fatalf("after the fault SignData: %v", err)
	}
	next := h.mustGenerate(p, pk.ID)
	if next.Fingerprint == pk.Fingerprint {
		t.Fatalf("after the fault GenerateKey(%s) kept the fingerprint %s", pk.ID, pk.Fingerprint)
	}
	if err := h.sign(callCtx(t), p, next); err != nil {
		t.Fatalf("after the fault SignData with the new key: %v", err)
	}
}

// TestFaultStorm signs from many goroutines while every kind of fault hits
// signing, creation, listing, keep-alive and retirement at once, with a
// rotation in the middle: every signature returned verifies with a key the
// plugin served, every failure carries a documented code, and once the storm
// ends the process serves, signs, rotates and cleans up normally: what it
// superseded is kept while it settles and retired once the cloud's clock has
// passed the settle period.
func TestFaultStorm(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		p := h.start(faultServer, faultExtra+`cleanup_interval = "1s"`+"\n"+`liveness_interval = "1s"`)
		keys := map[string]engine.PublicKey{}
		for _, id := range []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A"} {
			keys[id] = h.mustGenerate(p, id)
		}
		allowed := map[codes.Code]bool{codes.DeadlineExceeded: true}
		for _, kind := range faultKinds {
			allowed[h.v.persistentCode(kind)] = true
			h.v.inject(t, opSign, kind, 4)
		}
		h.v.inject(t, opCreate, serverError, 1)
		h.v.inject(t, opList, unavailable, 2)
		h.v.inject(t, opKeepAlive, throttled, 2)
		h.v.inject(t, opRetire, dropped, 1)
		h.v.slow(t, opSign, 20*time.Millisecond)

		const workers, perWorker = 8, 12
		var (
			mu       sync.Mutex
			ok, fail int
			served   = map[string]bool{}
		)
		for _, pk := range keys {
			served[pk.Fingerprint] = true
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWorker {
					id := "x509-CA-A"
					if (w+i)%2 == 1 {
						id = "JWT-Signer-A"
					}
					pk, err := p.GetPublicKey(t.Context(), id)
					if err != nil {
						t.Errorf("GetPublicKey(%s) during the storm: %v", id, h.record(err))
						return
					}
					err = h.sign(callCtx(t), p, pk)
					mu.Lock()
					switch {
					case err == nil:
						ok++
					case allowed[status.Code(err)]:
						fail++
					default:
						// A signature that does not verify, a wrong
						// fingerprint, or an undocumented code.
						t.Errorf("SignData(%s) during the storm: %v", id, err)
					}
					mu.Unlock()
				}
			}()
		}
		// A rotation in the storm, of the slot not in use as SPIRE does; the
		// injected create fault may fail it once.
		for range 2 {
			pk, err := h.generate(p, "x509-CA-B")
			if err == nil {
				mu.Lock()
				served[pk.Fingerprint] = true
				mu.Unlock()
				break
			}
			if !allowed[status.Code(err)] {
				t.Errorf("GenerateKey during the storm: %v", err)
			}
		}
		wg.Wait()
		t.Logf("during the storm: %d signatures, %d documented failures", ok, fail)
		if ok == 0 {
			t.Error("no signature succeeded during the storm")
		}
		h.v.clear(t)

		// After the storm: the same process serves, signs and rotates.
		var superseded []engine.PublicKey
		for _, pk := range h.mustSignAll(p) {
			if !served[pk.Fingerprint] {
				t.Errorf("after the storm %s is served with %s, which no GenerateKey returned", pk.ID, pk.Fingerprint)
			}
			stillWorks(t, h, p, pk)
			superseded = append(superseded, pk)
		}
		// And its next cleanup passes succeed, and keep what the rotations
		// superseded while it settles.
		after := countLogs(p, cleanupDone)
		l := waitPasses(t, p, cleanupDone, after, 1)
		if ok, _ := l.Fields["ok"].(bool); !ok {
			// A retirement may have failed once more; the pass after it
			// must succeed.
			l = waitPasses(t, p, cleanupDone, after+1, 1)
			if ok, _ := l.Fields["ok"].(bool); !ok {
				t.Errorf("cleanup passes after the storm keep failing: %s", l.Raw)
			}
		}
		waitPasses(t, p, cleanupDone, countLogs(p, cleanupDone), 1)
		for _, pk := range superseded {
			mustHaveGen(t, h, faultServer, pk, "retired before it settled")
		}
		inUse, err := p.GetPublicKeys(callCtx(t))
		if err != nil {
			t.Fatalf("GetPublicKeys: %v", h.record(err))
		}
		// Past the settle period, a cleanup pass leaves only keys in use:
		// whatever the storm left (superseded generations, creations that
		// failed after taking effect) has settled.
		for _, k := range own(h.v.keys(t), faultServer) {
			waitUnleasedUnlessServed(t, h, faultServer, k, inUse)
		}
		advanceAndClean(t, h, settlePast, p)
		left := own(h.v.keys(t), faultServer)
		if len(left) != len(inUse) {
			t.Errorf("after the storm and a cleanup pass past the settle period the vault holds %v of this server, %d keys are in use", refs(left), len(inUse))
		}
		for _, pk := range inUse {
			mustHaveGen(t, h, faultServer, pk, "retired while in use")
		}
	})
}
