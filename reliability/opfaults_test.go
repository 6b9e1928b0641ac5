package reliability

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// Warnings the engine logs when a background step fails.
const (
	keepAliveFailed = "Could not keep key alive; will retry soon"
	retireFailed    = "Could not retire key generation; trying again later"
	cleanupFailed   = "Cleanup pass failed; it runs again at the next interval"
)

// faultPassesExtra is faultExtra with both background passes every second.
const faultPassesExtra = faultExtra + passesExtra

// ciOpKinds are the kinds the default run injects into each operation,
// transient then lasting: one each, every kind somewhere in the table.
// KMSKEEPER_LONG=1 injects every kind into every operation.
var ciOpKinds = map[op][2]faultKind{
	opCreate:    {throttledRetryAfter, ""}, // lasting: TestFaults
	opFetch:     {unavailable, throttled},
	opList:      {dropped, serverError},
	opKeepAlive: {throttled, unavailable},
	opRetire:    {serverError, dropped},
}

// opKinds returns the kinds injected into o, transient (lasting=false) or
// lasting, in this run.
func opKinds(o op, lasting bool) []faultKind {
	if suite.long {
		return faultKinds
	}
	i := 0
	if lasting {
		i = 1
	}
	if k := ciOpKinds[o][i]; k != "" {
		return []faultKind{k}
	}
	return nil
}

// TestOperationFaults faults each operation the plugin sends besides
// signing, alone: the public-key read (at Load and after a creation), the
// listing (at Load and in the cleanup pass), the keep-alive of the liveness
// pass, the retirement of a superseded key, and the creation itself.
//
//   - A transient fault (transientCount requests) that clears inside the
//     budget: a foreground call (Configure, GenerateKey) succeeds, at once
//     where the backend retries the fault itself, otherwise after at most one
//     failure per faulted request, each with the cause's code, as SPIRE
//     retries; a background pass succeeds on its own or on its next run.
//   - A lasting fault: a foreground call returns the documented code before
//     the caller's deadline (Configure for the listing and the read, as the
//     key set cannot be loaded; GenerateKey for the read that follows a
//     creation on Cloud KMS; GenerateKey for the creation itself is
//     TestFaults'); a background pass logs its warning and runs
//     again at the next interval while signing keeps working, and the
//     retirement a failed pass left is done by a later cleanup pass once the
//     fault clears.
//   - Slow answers on the creation and the listing, within the budget and
//     past the caller's deadline (past the pass's budget for the cleanup
//     pass).
//
// After each, the same process serves exactly the keys it should (by
// fingerprint), signs with them and rotates: nothing in memory was corrupted.
// The cloud's clock is moved a day to make keys due for the liveness pass.
//
// The default run, sized for CI (about 30 s on 2 cores under -race), injects
// one fault kind per operation and mode (ciOpKinds: every kind appears, and a
// "429 with Retry-After" into the creation, whose advised delay Cloud KMS's
// setup checks in its request log); KMSKEEPER_LONG=1 runs every kind into
// every operation (about 180 scenarios, 2 minutes). A lasting fault on a
// background pass of a cloud setup waits out the pass's 25 s budget, so the
// scenarios of all setups run side by side.
func TestOperationFaults(t *testing.T) {
	// One flat list over the setups, run side by side under the suite's
	// own bound rather than t.Parallel's (-parallel is the CPU count): the
	// scenarios mostly wait. Those that wait out a pass's budget go first.
	var long, short []subtest
	for _, s := range setups() {
		l, sh := opFaultRuns(s)
		long, short = append(long, l...), append(short, sh...)
	}
	runConcurrently(t, opFaultConcurrency, append(long, short...))
}

// opFaultConcurrency is how many scenarios run at once: most of their time
// is spent waiting out budgets and passes.
const opFaultConcurrency = 20

// opFaultRuns returns the scenarios of TestOperationFaults on s, named
// <setup>/<operation>/...: those that wait out a background pass's budget
// (25 s on a cloud setup) and the others.
func opFaultRuns(s setup) (long, short []subtest) {
	add := func(list *[]subtest, name string, f func(t *testing.T)) {
		*list = append(*list, subtest{s.name + "/" + name, f})
	}
	for _, kind := range opKinds(opKeepAlive, true) {
		add(&long, "KeepAlive/"+string(kind)+"/lasting", func(t *testing.T) { keepAliveFault(t, s, kind, true) })
	}
	for _, kind := range opKinds(opRetire, true) {
		add(&long, "Retire/"+string(kind)+"/lasting", func(t *testing.T) { retireFault(t, s, kind, true) })
	}
	for _, kind := range opKinds(opList, true) {
		add(&long, "List/"+string(kind)+"/lasting/cleanup pass", func(t *testing.T) { listFault(t, s, kind, true, false) })
	}
	add(&long, "List/slow answer past the budget/cleanup pass", func(t *testing.T) { slowList(t, s, true, false) })

	for _, kind := range opKinds(opList, true) {
		add(&short, "List/"+string(kind)+"/lasting/Load", func(t *testing.T) { listFault(t, s, kind, true, true) })
	}
	add(&short, "List/slow answer past the deadline/Load", func(t *testing.T) { slowList(t, s, true, true) })
	for _, kind := range opKinds(opFetch, true) {
		add(&short, "Fetch/"+string(kind)+"/lasting", func(t *testing.T) { fetchFault(t, s, kind, true) })
	}
	for _, kind := range opKinds(opKeepAlive, false) {
		add(&short, "KeepAlive/"+string(kind)+"/transient", func(t *testing.T) { keepAliveFault(t, s, kind, false) })
	}
	for _, kind := range opKinds(opRetire, false) {
		add(&short, "Retire/"+string(kind)+"/transient", func(t *testing.T) { retireFault(t, s, kind, false) })
	}
	for _, kind := range opKinds(opList, false) {
		add(&short, "List/"+string(kind)+"/transient/Load", func(t *testing.T) { listFault(t, s, kind, false, true) })
		add(&short, "List/"+string(kind)+"/transient/cleanup pass", func(t *testing.T) { listFault(t, s, kind, false, false) })
	}
	for _, kind := range opKinds(opFetch, false) {
		add(&short, "Fetch/"+string(kind)+"/transient", func(t *testing.T) { fetchFault(t, s, kind, false) })
	}
	for _, kind := range opKinds(opCreate, false) {
		add(&short, "Create/"+string(kind)+"/transient", func(t *testing.T) { createTransient(t, s, kind) })
	}
	add(&short, "Create/slow answer within the budget", func(t *testing.T) { slowCreate(t, s, false) })
	add(&short, "Create/slow answer past the deadline", func(t *testing.T) { slowCreate(t, s, true) })
	add(&short, "List/slow answer within the budget", func(t *testing.T) { slowList(t, s, false, false) })
	return long, short
}

// faultCount is how many requests a fault of the given mode fails: 0 (until
// cleared) for a lasting one.
func faultCount(lasting bool) int {
	if lasting {
		return 0
	}
	return transientCount
}

// throughTransient runs call as SPIRE does under a transient fault of kind
// on o, retrying what fails: where the backend absorbs the fault the first
// call succeeds; otherwise each faulted request may fail one call, with the
// cause's code, and the call after them succeeds.
func throughTransient(t *testing.T, h *harness, o op, kind faultKind, what string, call func() error) {
	t.Helper()
	want := h.v.persistentCode(kind)
	attempts := 1
	if !h.v.absorbs(o, kind) {
		attempts = transientCount + 1
	}
	var err error
	for i := range attempts {
		if err = h.record(call()); err == nil {
			return
		}
		if status.Code(err) != want {
			t.Errorf("%s during a transient %s on %s (attempt %d) = %v, want %v", what, kind, o, i+1, err, want)
		}
	}
	t.Fatalf("%s once a transient %s on %s cleared = %v, want success", what, kind, o, err)
}

// configureCtx configures p as faultServer with extra under ctx.
func (h *harness) configureCtx(ctx context.Context, p *pluginhost.Plugin, extra string) error {
	return h.record(p.Configure(ctx, trustDomain, h.v.pluginData(faultServer, extra)))
}

// restartWithKeys starts a process, has it create a key and stops it: the
// next process loads that key.
func restartWithKeys(t *testing.T, h *harness) engine.PublicKey {
	t.Helper()
	p := h.start(faultServer, faultExtra)
	pk := h.mustGenerate(p, "x509-CA-A")
	if err := p.Close(); err != nil {
		t.Logf("stopping the first process: %v", err)
	}
	return pk
}

// servesExactly checks that p serves want and nothing else (by key ID and
// fingerprint), and signs with each.
func servesExactly(t *testing.T, h *harness, p *pluginhost.Plugin, want ...engine.PublicKey) {
	t.Helper()
	got, err := p.GetPublicKeys(callCtx(t))
	if err != nil {
		t.Fatalf("GetPublicKeys: %v", h.record(err))
	}
	byID := map[string]string{}
	for _, pk := range got {
		byID[pk.ID] = pk.Fingerprint
	}
	if len(got) != len(want) {
		t.Errorf("serving %v, want %d keys", byID, len(want))
	}
	for _, pk := range want {
		if fp, ok := byID[pk.ID]; !ok || fp != pk.Fingerprint {
			t.Errorf("serving %s with %q, want %s", pk.ID, fp, pk.Fingerprint)
			continue
		}
		if err := h.sign(callCtx(t), p, pk); err != nil {
			t.Errorf("signing with %s: %v", pk.ID, err)
		}
	}
}

// waitGoodPass waits for one of the next within passes ending with msg to
// have succeeded, and fails the test if none did.
func waitGoodPass(t *testing.T, p *pluginhost.Plugin, msg string, within int) {
	t.Helper()
	after := countLogs(p, msg)
	var l pluginhost.LogLine
	for i := range within {
		l = waitPasses(t, p, msg, after+i, 1)
		if ok, _ := l.Fields["ok"].(bool); ok {
			return
		}
	}
	t.Errorf("none of the %d %q lines after the fault cleared says ok; the last: %s", within, msg, l.Raw)
}

// waitVault polls the vault (a listing, on Cloud KMS) until cond holds.
func waitVault(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkWarnings checks the warnings a transient fault caused on a
// background pass: none where the backend absorbs it, at least one where
// it does not (the fault did reach the pass).
func checkWarnings(t *testing.T, h *harness, p *pluginhost.Plugin, o op, kind faultKind, msg string, before int) {
	t.Helper()
	n := countLogs(p, msg) - before
	switch absorbed := h.v.absorbs(o, kind); {
	case absorbed && n > 0:
		t.Errorf("%d %q warnings under a transient %s on %s, which the backend retries within the budget", n, msg, kind, o)
	case !absorbed && n == 0:
		t.Errorf("no %q warning under a transient %s on %s, which the backend does not retry", msg, kind, o)
	}
}

// fetchFault faults the public-key read. At Load, in a restarted process:
// a transient fault lets Configure succeed, a lasting one fails it with the
// documented code, and a later Configure of the same process succeeds; the
// key loaded is the one the first process made. Where a creation reads the
// new key (Cloud KMS), GenerateKey of a new key ID under the fault succeeds
// (transient) or fails with the documented code and serves nothing new
// (lasting).
func fetchFault(t *testing.T, s setup, kind faultKind, lasting bool) {
	h := newHarness(t, s)
	p, pk := loadUnderFault(t, h, opFetch, "the public-key read", kind, lasting)
	want := h.v.persistentCode(kind)

	if h.v.fetchesAfterCreate() {
		h.v.inject(t, opFetch, kind, faultCount(lasting))
		if lasting {
			ctx, cancel := context.WithTimeout(t.Context(), suite.lastingDeadline())
			_, err := p.GenerateKey(ctx, "JWT-Signer-A", engine.ECP256)
			cancel()
			if status.Code(h.record(err)) != want {
				t.Errorf("GenerateKey under a lasting %s on the public-key read = %v, want %v", kind, err, want)
			}
			h.v.clear(t)
			servesExactly(t, h, p, pk)
			// The version the failed creation left is resumed or
			// replaced; either way the next GenerateKey serves a key.
			made := h.mustGenerate(p, "JWT-Signer-A")
			servesExactly(t, h, p, pk, made)
		} else {
			var made engine.PublicKey
			throughTransient(t, h, opFetch, kind, "GenerateKey", func() (err error) {
				made, err = h.generate(p, "JWT-Signer-A")
				return err
			})
			h.v.clear(t)
			servesExactly(t, h, p, pk, made)
		}
	}
	stillWorks(t, h, p, pk)
}

// loadUnderFault restarts a process with keys in the vault and configures
// it while o (what names it in messages) fails: a transient fault lets
// Configure succeed, a lasting one fails it with the documented code and a
// later Configure of the same process succeeds. It returns the process,
// checked to serve exactly the key the first process made, and that key.
func loadUnderFault(t *testing.T, h *harness, o op, what string, kind faultKind, lasting bool) (*pluginhost.Plugin, engine.PublicKey) {
	t.Helper()
	pk := restartWithKeys(t, h)
	ops := []op{o}
	if o == opFetch && h.v.leaseCarriesKey() {
		// The lease written on each adopted key brings its public key; a
		// read follows only when that write fails. A lasting fault must
		// reach both, a transient one meets the first.
		ops = []op{opKeepAlive}
		if lasting {
			ops = append(ops, opFetch)
		}
	}
	for _, o := range ops {
		h.v.inject(t, o, kind, faultCount(lasting))
	}
	p := h.launch()
	if lasting {
		ctx, cancel := context.WithTimeout(t.Context(), suite.lastingDeadline())
		err := h.configureCtx(ctx, p, faultExtra)
		cancel()
		if want := h.v.persistentCode(kind); status.Code(err) != want {
			t.Errorf("Configure under a lasting %s on %s = %v, want %v", kind, what, err, want)
		}
		h.v.clear(t)
		if err := h.configureCtx(callCtx(t), p, faultExtra); err != nil {
			t.Fatalf("Configure of the same process once the fault cleared: %v", err)
		}
	} else {
		throughTransient(t, h, o, kind, "Configure", func() error { return h.configureCtx(callCtx(t), p, faultExtra) })
		h.v.clear(t)
	}
	servesExactly(t, h, p, pk)
	return p, pk
}

// listFault faults the listing, at Load or in the cleanup pass. At Load,
// in a restarted process, as fetchFault. In the cleanup pass of a running
// process: a transient fault is absorbed or fails the passes it reaches, and
// a later pass succeeds; a lasting one fails passes, with a warning, while
// signing keeps working, until it clears.
func listFault(t *testing.T, s setup, kind faultKind, lasting, atLoad bool) {
	h := newHarness(t, s)
	if atLoad {
		p, pk := loadUnderFault(t, h, opList, "the listing", kind, lasting)
		stillWorks(t, h, p, pk)
		return
	}

	p := h.start(faultServer, faultPassesExtra)
	pk := h.mustGenerate(p, "x509-CA-A")
	before := countLogs(p, cleanupFailed)
	h.v.inject(t, opList, kind, faultCount(lasting))
	if lasting {
		waitPasses(t, p, cleanupFailed, before, 1)
		servesExactly(t, h, p, pk)
		h.v.clear(t)
	} else {
		waitFor(t, "the cleanup passes to meet the transient fault", func() bool { return h.v.faultsSpent(t) })
	}
	waitGoodPass(t, p, cleanupDone, 3)
	if !lasting {
		checkWarnings(t, h, p, opList, kind, cleanupFailed, before)
	}
	servesExactly(t, h, p, pk)
	stillWorks(t, h, p, pk)
}

// keepAliveFault faults the keep-alive of the liveness pass: a day passes in
// the cloud, the cleanup pass's listing shows the plugin the cloud's time,
// and the keys are due. A transient fault is absorbed or fails the passes it
// reaches, a lasting one fails passes with a warning while signing keeps
// working; once it clears the key is kept alive. The keys are made before
// the fault: a creation commits with a lease write, the request the fault
// hits.
func keepAliveFault(t *testing.T, s setup, kind faultKind, lasting bool) {
	h := newHarness(t, s)
	p := h.start(faultServer, faultPassesExtra)
	pk := h.mustGenerate(p, "x509-CA-A")
	other := h.mustGenerate(p, "JWT-Signer-A")
	before := countLogs(p, keepAliveFailed)
	h.v.inject(t, opKeepAlive, kind, faultCount(lasting))
	h.v.advance(t, 25*time.Hour)
	if lasting {
		waitPasses(t, p, keepAliveFailed, before, 1)
		if keptAlive(t, h, pk) {
			t.Errorf("%s was kept alive under a lasting %s", pk.ID, kind)
		}
		servesExactly(t, h, p, pk, other)
		h.v.clear(t)
	} else {
		waitFor(t, "the liveness passes to meet the transient fault", func() bool { return h.v.faultsSpent(t) })
	}
	waitVault(t, pk.ID+" kept alive", func() bool { return keptAlive(t, h, pk) })
	waitGoodPass(t, p, livenessDone, 3)
	if !lasting {
		checkWarnings(t, h, p, opKeepAlive, kind, keepAliveFailed, before)
	}
	servesExactly(t, h, p, pk, other)
	stillWorks(t, h, p, pk)
}

// keptAlive reports whether the vault's generation of pk was updated within
// the keep-alive age of the cloud's time.
func keptAlive(t *testing.T, h *harness, pk engine.PublicKey) bool {
	t.Helper()
	now := h.v.now(t)
	k, ok := byFingerprint(own(h.v.keys(t), faultServer), pk.Fingerprint)
	if !ok {
		t.Fatalf("%s (%s) is gone from the vault", pk.ID, pk.Fingerprint)
	}
	return now.Sub(k.Updated) <= engine.DefaultKeepAliveAge
}

// retireFault faults the retirement of the generation a rotation
// superseded. The generation is kept while it settles; once the cloud's
// clock has passed the settle period a cleanup pass retires it. A transient
// fault is absorbed, or fails the retirement and a later cleanup pass
// retires it; a lasting one fails it with a warning while the new key signs,
// and once it clears a cleanup pass retires it.
func retireFault(t *testing.T, s setup, kind faultKind, lasting bool) {
	h := newHarness(t, s)
	p := h.start(faultServer, faultExtra+`cleanup_interval = "1s"`+"\n")
	old := h.mustGenerate(p, "x509-CA-A")
	before := countLogs(p, retireFailed)
	h.v.inject(t, opRetire, kind, faultCount(lasting))
	next := h.mustGenerate(p, "x509-CA-A")
	// Kept while it settles: the process ends its lease on it, and
	// cleanup passes go by without retiring it.
	waitUnleased(t, h, faultServer, old.Fingerprint)
	waitPasses(t, p, cleanupDone, countLogs(p, cleanupDone), 2)
	mustHaveGen(t, h, faultServer, old, "retired before it settled")
	servesExactly(t, h, p, next)

	h.v.advance(t, settlePast)
	if lasting {
		waitPasses(t, p, retireFailed, before, 1)
		mustHaveGen(t, h, faultServer, old, "retired under a lasting "+string(kind))
		servesExactly(t, h, p, next)
		h.v.clear(t)
	} else {
		waitFor(t, "the retirements to meet the transient fault", func() bool { return h.v.faultsSpent(t) })
	}
	waitVault(t, "the superseded generation to be retired", func() bool {
		left := own(h.v.keys(t), faultServer)
		return len(left) == 1 && left[0].Fingerprint == next.Fingerprint
	})
	waitGoodPass(t, p, cleanupDone, 3)
	if !lasting {
		checkWarnings(t, h, p, opRetire, kind, retireFailed, before)
	}
	servesExactly(t, h, p, next)
	stillWorks(t, h, p, next)
}

// createTransient rotates a key under a transient fault on the creation:
// GenerateKey succeeds (at once where the backend retries the fault, else
// as SPIRE retries) and the new key is served; on Cloud KMS a throttle's
// advised delay was waited.
func createTransient(t *testing.T, s setup, kind faultKind) {
	h := newHarness(t, s)
	p := h.start(faultServer, faultExtra)
	pk := h.mustGenerate(p, "x509-CA-A")
	h.v.inject(t, opCreate, kind, transientCount)
	var next engine.PublicKey
	throughTransient(t, h, opCreate, kind, "GenerateKey", func() (err error) {
		next, err = h.generate(p, "x509-CA-A")
		return err
	})
	if next.Fingerprint == pk.Fingerprint {
		t.Fatalf("GenerateKey kept the fingerprint %s", pk.Fingerprint)
	}
	checkAdvised(t, h, p, opCreate, kind)
	// A rotation reaches one of Cloud KMS's two creation methods: the
	// other's fault is left.
	h.v.clear(t)
	servesExactly(t, h, p, next)
	stillWorks(t, h, p, next)
}

// slowCreate rotates a key while creations answer slowly: within the budget
// GenerateKey succeeds; past the caller's deadline the plugin answers before
// it, saying the cloud did not answer in time, and keeps serving the key it
// had.
func slowCreate(t *testing.T, s setup, pastDeadline bool) {
	h := newHarness(t, s)
	p := h.start(faultServer, faultExtra)
	pk := h.mustGenerate(p, "x509-CA-A")
	if !pastDeadline {
		h.v.slow(t, opCreate, 500*time.Millisecond)
		next := h.mustGenerate(p, "x509-CA-A")
		h.v.clear(t)
		servesExactly(t, h, p, next)
		stillWorks(t, h, p, next)
		return
	}
	h.v.slow(t, opCreate, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	_, err := p.GenerateKey(ctx, "x509-CA-A", engine.ECP256)
	cancel()
	if c := status.Code(h.record(err)); c != codes.DeadlineExceeded && c != codes.Unavailable {
		t.Errorf("GenerateKey with a creation slower than the deadline = %v, want DeadlineExceeded or Unavailable before the caller's deadline", err)
	}
	h.v.clear(t)
	servesExactly(t, h, p, pk)
	stillWorks(t, h, p, pk)
}

// slowList lists slowly. Within the budget, Configure and the cleanup
// passes succeed. Past the deadline: at Load, Configure fails before the
// caller's deadline and a later Configure of the same process succeeds; in
// the cleanup pass, a listing that outlasts the pass's budget fails the pass
// with a warning, and the next pass succeeds.
func slowList(t *testing.T, s setup, pastDeadline, atLoad bool) {
	h := newHarness(t, s)
	switch {
	case !pastDeadline:
		pk := restartWithKeys(t, h)
		p := h.launch()
		h.v.slow(t, opList, 500*time.Millisecond)
		if err := h.configureCtx(callCtx(t), p, faultPassesExtra); err != nil {
			t.Fatalf("Configure with a slow listing within the budget: %v", err)
		}
		waitGoodPass(t, p, cleanupDone, 2)
		h.v.clear(t)
		servesExactly(t, h, p, pk)
		stillWorks(t, h, p, pk)
	case atLoad:
		pk := restartWithKeys(t, h)
		p := h.launch()
		h.v.slow(t, opList, time.Hour)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := h.configureCtx(ctx, p, faultExtra)
		cancel()
		if c := status.Code(err); c != codes.DeadlineExceeded && c != codes.Unavailable {
			t.Errorf("Configure with a listing slower than the deadline = %v, want DeadlineExceeded or Unavailable before the caller's deadline", err)
		}
		h.v.clear(t)
		if err := h.configureCtx(callCtx(t), p, faultExtra); err != nil {
			t.Fatalf("Configure of the same process once the answers sped up: %v", err)
		}
		servesExactly(t, h, p, pk)
		stillWorks(t, h, p, pk)
	default:
		p := h.start(faultServer, faultPassesExtra)
		pk := h.mustGenerate(p, "x509-CA-A")
		before := countLogs(p, cleanupFailed)
		// One listing held past the pass's budget.
		h.v.hold(t, opList, false, time.Hour)
		waitPasses(t, p, cleanupFailed, before, 1)
		servesExactly(t, h, p, pk)
		waitGoodPass(t, p, cleanupDone, 3)
		h.v.clear(t)
		servesExactly(t, h, p, pk)
		stillWorks(t, h, p, pk)
	}
}
