package engine_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/internal/manualclock"
	"github.com/kmskeeper/kmskeeper/internal/syncbuf"
)

const td = "example.org"

// settle is the default settle period, under which every test here runs
// unless it sets Options.Settle.
const settle = engine.DefaultSettle

// leaseCheck is when a lease read-back falls due under the default budget
// (twice the budget).
const leaseCheck = 2 * engine.DefaultBudget

// newFakeClock returns a manually advanced clock at the tests' epoch.
func newFakeClock() *manualclock.Clock {
	return manualclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
}

// skewedClock is a host clock off from base (the cloud's) by a fixed
// offset: it moves when base does.
type skewedClock struct {
	base *manualclock.Clock
	off  time.Duration
}

func (c skewedClock) Now() time.Time                         { return c.base.Now().Add(c.off) }
func (c skewedClock) After(d time.Duration) <-chan time.Time { return c.base.After(d) }

// hookFunc is a memory.Store hook.
type hookFunc func(ctx context.Context, op, keyID string) error

// env is one cloud (a memory store whose clock is the fake clock) and the
// managers a test opens over it.
type env struct {
	store *memory.Store
	clock *manualclock.Clock
	hook  atomic.Pointer[hookFunc]
}

// newEnv returns an env over an in-memory store.
func newEnv(t *testing.T) *env {
	t.Helper()
	return setupEnv(t, memory.NewStore())
}

// newFileEnv returns an env over a file store: the only kind whose
// injected faults (memory.Fault) act.
func newFileEnv(t *testing.T) *env {
	t.Helper()
	s, err := memory.OpenStore(filepath.Join(t.TempDir(), "vault.json"))
	if err != nil {
		t.Fatal(err)
	}
	return setupEnv(t, s)
}

func setupEnv(t *testing.T, s *memory.Store) *env {
	e := &env{store: s, clock: newFakeClock()}
	s.SetClock(e.clock.Now)
	// One hook for the store's life, dispatching to the test's current
	// one: tests swap hooks while managers run, without racing on the
	// store's field.
	s.Hook = func(ctx context.Context, op, keyID string) error {
		if h := e.hook.Load(); h != nil {
			return (*h)(ctx, op, keyID)
		}
		return nil
	}
	t.Cleanup(func() { e.setHook(nil) })
	return e
}

// setHook makes h the store's hook (nil for none).
func (e *env) setHook(h hookFunc) {
	if h == nil {
		e.hook.Store(nil)
		return
	}
	e.hook.Store(&h)
}

// newManager returns a manager over the store for serverID, not loaded.
// It is closed at the end of the test (with the hook cleared first).
func (e *env) newManager(t *testing.T, serverID string, opts engine.Options) *engine.Manager {
	t.Helper()
	if opts.Backend == nil {
		opts.Backend = e.store.Backend(td, serverID)
	}
	opts.ServerID = serverID
	if opts.Clock == nil {
		opts.Clock = e.clock
	}
	m, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.setHook(nil)
		m.Close()
	})
	return m
}

// open returns a loaded manager for serverID.
func (e *env) open(t *testing.T, serverID string, opts engine.Options) *engine.Manager {
	t.Helper()
	m := e.newManager(t, serverID, opts)
	if err := m.Load(context.Background()); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return m
}

// has reports whether ref is still in the store.
func (e *env) has(ref string) bool { return slices.Contains(e.store.Refs(), ref) }

// gen returns the stored generation ref, as the cloud holds it now.
func (e *env) gen(t *testing.T, ref string) engine.Generation {
	t.Helper()
	gens, err := e.store.Generations(td)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gens {
		if g.Ref == ref {
			return g
		}
	}
	t.Fatalf("no generation %s in the store", ref)
	return engine.Generation{}
}

// holders returns the holders of the committed leases on ref, sorted.
func (e *env) holders(t *testing.T, ref string) []string {
	t.Helper()
	var out []string
	for _, l := range e.gen(t, ref).Leases {
		if l.Ref == ref && !l.Pending {
			out = append(out, l.Holder)
		}
	}
	slices.Sort(out)
	return out
}

// refOf returns the ref of the stored generation whose public key is pk.
func (e *env) refOf(t *testing.T, pk engine.PublicKey) string {
	t.Helper()
	gens, err := e.store.Generations(td)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gens {
		der, err := x509.MarshalPKIXPublicKey(g.Public)
		if err != nil {
			t.Fatal(err)
		}
		if engine.Fingerprint(der) == pk.Fingerprint {
			return g.Ref
		}
	}
	t.Fatalf("no stored generation has the key %s", pk.Fingerprint)
	return ""
}

// served returns the ref m serves under id.
func (e *env) served(t *testing.T, m *engine.Manager, id string) string {
	t.Helper()
	pk, err := m.GetPublicKey(context.Background(), id)
	if err != nil {
		t.Fatalf("%s: GetPublicKey(%s): %v", m.Holder(), id, err)
	}
	return e.refOf(t, pk)
}

// addKey stores a generation directly (another server's, or one laid out
// by an older version) and returns its ref.
func (e *env) addKey(t *testing.T, serverID, keyID string, created, updated time.Time) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := e.store.Add(td, serverID, keyID, k, created, updated)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// gc runs `kmskeeper gc --apply` once, as operator.GC does: list, Plan
// with every lease counting and nothing known to be served, and retire
// what a Recheck still marks. It returns the refs it retired.
func (e *env) gc(t *testing.T, serverID string, local time.Time) []string {
	t.Helper()
	ctx := context.Background()
	b := e.store.Backend(td, serverID)
	gens, err := b.ListGenerations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	facts := engine.Facts{ServerID: serverID, Now: engine.CloudNow(b, gens, local)}
	var retired []string
	for _, a := range engine.Plan(gens, serverID, facts.Now, engine.Schedule{}) {
		if !a.Retire {
			continue
		}
		checked, err := engine.Recheck(ctx, b, a, gens, facts)
		if err != nil {
			t.Fatalf("gc: Recheck(%s): %v", a.Ref, err)
		}
		if !checked.Retire {
			continue
		}
		if err := b.Retire(ctx, a.Generation); err != nil {
			t.Fatalf("gc: Retire(%s): %v", a.Ref, err)
		}
		retired = append(retired, a.Ref)
	}
	return retired
}

// states maps each assessed ref to its state.
func states(as []engine.Assessment) map[string]engine.State {
	out := map[string]engine.State{}
	for _, a := range as {
		out[a.Ref] = a.State
	}
	return out
}

// mustCleanup runs a cleanup pass that retires.
func mustCleanup(t *testing.T, m *engine.Manager) []engine.Assessment {
	t.Helper()
	as, err := m.Cleanup(context.Background(), true)
	if err != nil {
		t.Fatalf("%s: Cleanup: %v", m.Holder(), err)
	}
	return as
}

// mustGenerate rotates id on m.
func mustGenerate(t *testing.T, m *engine.Manager, id string) engine.PublicKey {
	t.Helper()
	pk, err := m.GenerateKey(context.Background(), id, engine.ECP256)
	if err != nil {
		t.Fatalf("%s: GenerateKey(%s): %v", m.Holder(), id, err)
	}
	return pk
}

func digest(h crypto.Hash, msg string) []byte {
	w := h.New()
	w.Write([]byte(msg))
	return w.Sum(nil)
}

// mustSign signs with id and fails the test if the signature is refused;
// it returns the fingerprint the signature was made with.
func mustSign(t *testing.T, m *engine.Manager, id string) string {
	t.Helper()
	_, fp, err := m.SignData(context.Background(), id, digest(crypto.SHA256, "m"), crypto.SHA256)
	if err != nil {
		t.Fatalf("%s: SignData(%s): %v", m.Holder(), id, err)
	}
	return fp
}

func wantCode(t *testing.T, err error, code codes.Code, substr string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("error = %v (code %v), want code %v", err, got, code)
	}
	if substr != "" && !strings.Contains(err.Error(), substr) {
		t.Fatalf("error = %q, want it to contain %q", err, substr)
	}
}

func verifyWith(t *testing.T, pkix []byte, d, sig []byte, opts crypto.SignerOpts) {
	t.Helper()
	pub, err := x509.ParsePKIXPublicKey(pkix)
	if err != nil {
		t.Fatal(err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, d, sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			if err := rsa.VerifyPSS(k, pss.Hash, d, sig, &rsa.PSSOptions{SaltLength: pss.Hash.Size()}); err != nil {
				t.Fatalf("PSS: %v", err)
			}
			return
		}
		if err := rsa.VerifyPKCS1v15(k, opts.HashFunc(), d, sig); err != nil {
			t.Fatalf("PKCS1v15: %v", err)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// counting records the calls a Manager makes to its backend.
type counting struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *counting) hook(_ context.Context, op, _ string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[op]++
	return nil
}

func (c *counting) get(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

func bufferLogger(b *syncbuf.Buffer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: b, Level: hclog.Debug})
}
