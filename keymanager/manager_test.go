package keymanager_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/keymanager"
)

const td = "example.org"

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
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

type env struct {
	store *memory.Store
	clock *fakeClock
	m     *keymanager.Manager
}

func newEnv(t *testing.T, opts keymanager.Options) *env {
	t.Helper()
	e := &env{store: memory.NewStore(), clock: newFakeClock()}
	e.store.SetClock(e.clock.Now)
	e.m = e.open(t, "server-a", opts)
	return e
}

func (e *env) open(t *testing.T, serverID string, opts keymanager.Options) *keymanager.Manager {
	t.Helper()
	opts.Backend = e.store.Backend(td, serverID)
	opts.ServerID = serverID
	if opts.Clock == nil {
		opts.Clock = e.clock
	}
	m, err := keymanager.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(context.Background()); err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func digest(h crypto.Hash, msg string) []byte {
	w := h.New()
	w.Write([]byte(msg))
	return w.Sum(nil)
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

func TestGenerateServeAndSign(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	tests := []struct {
		id   string
		kt   keymanager.KeyType
		opts []crypto.SignerOpts
	}{
		{"x509-CA-A", keymanager.ECP256, []crypto.SignerOpts{crypto.SHA256, crypto.SHA384}},
		{"JWT-Signer-A", keymanager.ECP384, []crypto.SignerOpts{crypto.SHA384}},
		{"rsa", keymanager.RSA2048, []crypto.SignerOpts{
			crypto.SHA256, crypto.SHA512,
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256},
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA384},
			&rsa.PSSOptions{SaltLength: 64, Hash: crypto.SHA512},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			pk, err := e.m.GenerateKey(ctx, tt.id, tt.kt)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(pk.PKIX)
			if pk.ID != tt.id || pk.Type != tt.kt || pk.Fingerprint != hex.EncodeToString(sum[:]) {
				t.Fatalf("public key = %+v", pk)
			}
			got, err := e.m.GetPublicKey(ctx, tt.id)
			if err != nil || got.Fingerprint != pk.Fingerprint {
				t.Fatalf("GetPublicKey = %+v, %v", got, err)
			}
			for _, o := range tt.opts {
				d := digest(o.HashFunc(), "hello")
				sig, fp, err := e.m.SignData(ctx, tt.id, d, o)
				if err != nil {
					t.Fatalf("SignData(%v): %v", o, err)
				}
				if fp != pk.Fingerprint {
					t.Fatalf("fingerprint %s, want %s", fp, pk.Fingerprint)
				}
				verifyWith(t, pk.PKIX, d, sig, o)
			}
		})
	}
	all, _ := e.m.GetPublicKeys(ctx)
	if len(all) != 3 || all[0].ID != "JWT-Signer-A" || all[2].ID != "x509-CA-A" {
		t.Fatalf("GetPublicKeys = %v", all)
	}
}

func TestReplaceGivesNewFingerprintAndRetiresOld(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	first, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	if first.Fingerprint == second.Fingerprint {
		t.Fatal("replacement kept the fingerprint")
	}
	// The old generation is retired in the background.
	waitFor(t, func() bool { return len(e.store.Refs()) == 1 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSigningContinuesWhileGenerateKeyBlocks(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	old, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	e.store.Hook = func(ctx context.Context, op, _ string) error {
		if op == "Create" {
			close(entered)
			<-release
		}
		return nil
	}
	done := make(chan keymanager.PublicKey)
	go func() {
		pk, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256)
		if err != nil {
			t.Error(err)
		}
		done <- pk
	}()
	<-entered
	// GenerateKey is blocked inside the backend: the old key signs, and
	// GetPublicKey(s) answer, without waiting for it.
	d := digest(crypto.SHA256, "during rotation")
	sig, fp, err := e.m.SignData(ctx, "x509-CA-A", d, crypto.SHA256)
	if err != nil || fp != old.Fingerprint {
		t.Fatalf("SignData during rotation = %s, %v; want old key %s", fp, err, old.Fingerprint)
	}
	verifyWith(t, old.PKIX, d, sig, crypto.SHA256)
	if _, err := e.m.GetPublicKeys(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	nk := <-done
	_, fp, err = e.m.SignData(ctx, "x509-CA-A", d, crypto.SHA256)
	if err != nil || fp != nk.Fingerprint || fp == old.Fingerprint {
		t.Fatalf("after rotation SignData fingerprint = %s, %v; want new %s", fp, err, nk.Fingerprint)
	}
}

func TestLoadPicksNewestAndRetiresOthers(t *testing.T) {
	store := memory.NewStore()
	clock := newFakeClock()
	base := clock.Now().Add(-48 * time.Hour)
	var keys []*ecdsa.PrivateKey
	var refs []string
	for i := range 3 {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		keys = append(keys, k)
		created := base.Add(time.Duration(i) * time.Hour)
		ref, err := store.Add(td, "server-a", "x509-CA-A", k, created, created)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	// Another server's key and another trust domain's key are not ours.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	store.Add(td, "server-b", "x509-CA-A", other, base.Add(5*time.Hour), clock.Now())
	store.Add("other.org", "server-a", "x509-CA-A", other, base.Add(5*time.Hour), clock.Now())

	m, err := keymanager.New(keymanager.Options{Backend: store.Backend(td, "server-a"), ServerID: "server-a", Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	pk, err := m.GetPublicKey(context.Background(), "x509-CA-A")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := x509.MarshalPKIXPublicKey(keys[2].Public())
	if string(pk.PKIX) != string(want) {
		t.Fatal("Load did not pick the newest generation")
	}
	m.Start()
	waitFor(t, func() bool { return len(store.Refs()) == 3 })
	for _, r := range store.Refs() {
		if r == refs[0] || r == refs[1] {
			t.Fatalf("superseded generation %s not retired", r)
		}
	}
}

func TestLoadRefusesDisabledKey(t *testing.T) {
	store := memory.NewStore()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ref, _ := store.Add(td, "server-a", "x509-CA-A", k, time.Now(), time.Now())
	store.SetDisabled(ref, true)
	m, _ := keymanager.New(keymanager.Options{Backend: store.Backend(td, "server-a"), ServerID: "server-a"})
	wantCode(t, m.Load(context.Background()), codes.FailedPrecondition, ref)
}

func TestCreateRateGuard(t *testing.T) {
	e := newEnv(t, keymanager.Options{MaxCreationsPerHour: 3})
	ctx := context.Background()
	for range 3 {
		if _, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(10 * time.Second)
	}
	_, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256)
	wantCode(t, err, codes.ResourceExhausted, "max_key_creations_per_hour = 3")
	if !strings.Contains(err.Error(), "next creation is allowed at") {
		t.Errorf("error does not say when: %v", err)
	}
	// Other key IDs are not affected.
	if _, err := e.m.GenerateKey(ctx, "JWT-Signer-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	if _, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatalf("after an hour: %v", err)
	}
	// A storm: every 10 s for an hour creates at most the limit.
	e2 := newEnv(t, keymanager.Options{MaxCreationsPerHour: 3})
	created := 0
	for range 360 {
		if _, err := e2.m.GenerateKey(ctx, "x509-CA-B", keymanager.ECP256); err == nil {
			created++
		}
		e2.clock.Advance(10 * time.Second)
	}
	if created > 3*2 {
		t.Fatalf("storm created %d keys in an hour with a limit of 3", created)
	}
	// Reconfigure raises the limit live.
	e2.m.Reconfigure(keymanager.Live{MaxCreationsPerHour: 100}, nil)
	if _, err := e2.m.GenerateKey(ctx, "x509-CA-B", keymanager.ECP256); err != nil {
		t.Fatalf("after raising the limit: %v", err)
	}
}

func TestRequestValidation(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	e.m.GenerateKey(ctx, "ec", keymanager.ECP256)
	tests := []struct {
		name   string
		id     string
		digest []byte
		opts   crypto.SignerOpts
		code   codes.Code
		substr string
	}{
		{"unknown key", "nope", digest(crypto.SHA256, "x"), crypto.SHA256, codes.NotFound, "nope"},
		{"empty id", "", digest(crypto.SHA256, "x"), crypto.SHA256, codes.InvalidArgument, "empty"},
		{"short digest", "ec", []byte("abc"), crypto.SHA256, codes.InvalidArgument, "3 bytes"},
		{"no hash", "ec", digest(crypto.SHA256, "x"), crypto.Hash(0), codes.InvalidArgument, "hash"},
		{"md5", "ec", make([]byte, 16), crypto.MD5, codes.InvalidArgument, "unsupported hash"},
		{"pss on ec", "ec", digest(crypto.SHA256, "x"), &rsa.PSSOptions{Hash: crypto.SHA256}, codes.InvalidArgument, "PSS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := e.m.SignData(ctx, tt.id, tt.digest, tt.opts)
			wantCode(t, err, tt.code, tt.substr)
		})
	}
	_, err := e.m.GenerateKey(ctx, "x", keymanager.KeyTypeUnspecified)
	wantCode(t, err, codes.InvalidArgument, "unsupported key type")
	_, err = e.m.GetPublicKey(ctx, "nope")
	wantCode(t, err, codes.NotFound, "nope")
}

func TestPSSSaltLengths(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	pk, err := e.m.GenerateKey(ctx, "rsa", keymanager.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	d := sha512.Sum384([]byte("x"))
	for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 48} {
		o := &rsa.PSSOptions{SaltLength: salt, Hash: crypto.SHA384}
		sig, _, err := e.m.SignData(ctx, "rsa", d[:], o)
		if err != nil {
			t.Fatalf("salt %d: %v", salt, err)
		}
		verifyWith(t, pk.PKIX, d[:], sig, o)
	}
	_, _, err = e.m.SignData(ctx, "rsa", d[:], &rsa.PSSOptions{SaltLength: 20, Hash: crypto.SHA384})
	wantCode(t, err, codes.InvalidArgument, "salt length 20")
}

// lying wraps a backend and corrupts its signatures.
type lying struct{ keymanager.Backend }

func (l lying) Sign(ctx context.Context, g keymanager.Generation, d []byte, o crypto.SignerOpts) ([]byte, error) {
	sig, err := l.Backend.Sign(ctx, g, d, o)
	if err == nil {
		sig[len(sig)/2] ^= 0xff
	}
	return sig, err
}

func TestBadSignatureIsNeverReturned(t *testing.T) {
	store := memory.NewStore()
	m, _ := keymanager.New(keymanager.Options{Backend: lying{store.Backend(td, "s")}, ServerID: "s"})
	defer m.Close()
	ctx := context.Background()
	if _, err := m.GenerateKey(ctx, "k", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	sig, _, err := m.SignData(ctx, "k", digest(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.Internal, "does not verify")
	if sig != nil {
		t.Fatal("a bad signature was returned")
	}
}

func TestBudgetEndsBeforeCallerDeadline(t *testing.T) {
	e := newEnv(t, keymanager.Options{Budget: 200 * time.Millisecond})
	ctx := context.Background()
	e.m.GenerateKey(ctx, "k", keymanager.ECP256)
	e.store.Hook = func(ctx context.Context, op, _ string) error {
		<-ctx.Done() // a cloud that never answers
		return ctx.Err()
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err := e.m.SignData(cctx, "k", digest(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.DeadlineExceeded, "key k")
	if time.Since(start) > 10*time.Second {
		t.Fatalf("SignData took %v with a 200ms budget", time.Since(start))
	}
	// The caller's own deadline wins when it is sooner than the budget.
	e.m.Reconfigure(keymanager.Live{}, nil)
	short, cancel2 := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel2()
	if _, _, err := e.m.SignData(short, "k", digest(crypto.SHA256, "x"), crypto.SHA256); err == nil {
		t.Fatal("want an error")
	}
	if short.Err() != nil {
		t.Fatal("the engine used the whole caller deadline; it must keep a margin")
	}
}

func TestBackendCodesArePreserved(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	e.m.GenerateKey(ctx, "k", keymanager.ECP256)
	for _, code := range []codes.Code{codes.PermissionDenied, codes.ResourceExhausted, codes.Unavailable, codes.FailedPrecondition} {
		e.store.Hook = func(context.Context, string, string) error {
			return keymanager.Errorf(code, "cloud says no")
		}
		_, _, err := e.m.SignData(ctx, "k", digest(crypto.SHA256, "x"), crypto.SHA256)
		wantCode(t, err, code, "cloud says no")
		_, err = e.m.GenerateKey(ctx, "k", keymanager.ECP256)
		wantCode(t, err, code, "key k")
	}
	e.store.Hook = func(context.Context, string, string) error { return errors.New("bug") }
	_, _, err := e.m.SignData(ctx, "k", digest(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.Internal, "bug")
	// The key set survived every failure.
	e.store.Hook = nil
	if _, _, err := e.m.SignData(ctx, "k", digest(crypto.SHA256, "x"), crypto.SHA256); err != nil {
		t.Fatalf("after failures: %v", err)
	}
}

func TestCleanup(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	now := e.clock.Now()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	staleRef, _ := e.store.Add(td, "server-b", "x509-CA-A", k, now.Add(-30*24*time.Hour), now.Add(-15*24*time.Hour))
	freshRef, _ := e.store.Add(td, "server-c", "x509-CA-A", k, now.Add(-30*24*time.Hour), now.Add(-13*24*time.Hour))
	if _, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	// A generation with our server ID that this process did not make.
	conflictRef, _ := e.store.Add(td, "server-a", "JWT-Signer-A", k, now, now)

	as, err := e.m.Cleanup(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]keymanager.State{}
	for _, a := range as {
		states[a.Ref] = a.State
	}
	if states[staleRef] != keymanager.StateStale || states[freshRef] != keymanager.StateForeign || states[conflictRef] != keymanager.StateConflict {
		t.Fatalf("states = %v", states)
	}
	if len(e.store.Refs()) != 4 {
		t.Fatal("dry run retired keys")
	}
	if _, err := e.m.Cleanup(ctx, true); err != nil {
		t.Fatal(err)
	}
	refs := strings.Join(e.store.Refs(), " ")
	if strings.Contains(refs, staleRef) || !strings.Contains(refs, freshRef) || !strings.Contains(refs, conflictRef) {
		t.Fatalf("after cleanup: %s", refs)
	}
}

func TestCleanupSparesKeyBeingCreated(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.store.Hook = func(ctx context.Context, op, _ string) error {
		if op == "Fetch" {
			once.Do(func() { close(entered); <-release })
		}
		return nil
	}
	// A backend whose Create does not return the public key forces a fetch
	// after the create: block there, with the new generation in the store.
	m, _ := keymanager.New(keymanager.Options{Backend: noPublic{e.store.Backend(td, "server-x")}, ServerID: "server-x", Clock: e.clock})
	defer m.Close()
	done := make(chan error)
	go func() { _, err := m.GenerateKey(ctx, "k", keymanager.ECP256); done <- err }()
	<-entered
	as, err := m.Cleanup(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].State != keymanager.StateCreating || as[0].Retire {
		t.Fatalf("assessment during creation = %+v", as)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type noPublic struct{ keymanager.Backend }

func (n noPublic) Create(ctx context.Context, id string, t keymanager.KeyType, l keymanager.Lease) (keymanager.Generation, error) {
	g, err := n.Backend.Create(ctx, id, t, l)
	g.Public = nil
	return g, err
}

func TestKeepAliveOnlyTouchesOldKeys(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	var c counting
	e.store.Hook = c.hook
	e.m.GenerateKey(ctx, "a", keymanager.ECP256)
	if err := e.m.KeepAlive(ctx); err != nil || c.get("KeepAlive") != 0 {
		t.Fatalf("fresh key kept alive: %d calls, %v", c.get("KeepAlive"), err)
	}
	e.clock.Advance(25 * time.Hour)
	if err := e.m.KeepAlive(ctx); err != nil || c.get("KeepAlive") != 1 {
		t.Fatalf("old key: %d calls, %v", c.get("KeepAlive"), err)
	}
	if err := e.m.KeepAlive(ctx); err != nil || c.get("KeepAlive") != 1 {
		t.Fatalf("just-refreshed key touched again: %d calls", c.get("KeepAlive"))
	}
}

func TestSchedulerRunsPasses(t *testing.T) {
	e := newEnv(t, keymanager.Options{Schedule: keymanager.Schedule{LivenessInterval: time.Hour, CleanupInterval: 2 * time.Hour}})
	ctx := context.Background()
	e.m.GenerateKey(ctx, "a", keymanager.ECP256)
	now := e.clock.Now()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	staleRef, _ := e.store.Add(td, "gone", "a", k, now.Add(-20*24*time.Hour), now.Add(-20*24*time.Hour))
	var c counting
	e.store.Hook = c.hook
	e.m.Start()
	for i := range 30 {
		waitFor(t, func() bool { return e.clock.pending() > 0 })
		e.clock.Advance(time.Hour)
		_ = i
	}
	waitFor(t, func() bool { return !strings.Contains(strings.Join(e.store.Refs(), " "), staleRef) })
	if c.get("KeepAlive") == 0 {
		t.Error("no liveness call in 30 hours")
	}
	if n := c.get("List"); n < 10 || n > 16 {
		t.Errorf("%d cleanup listings in 30 hours at one per 2 hours", n)
	}
}

func TestReconfigureShortensIntervalsAtOnce(t *testing.T) {
	// Default intervals: the loop waits six hours for its first pass. A
	// re-Configure to one minute must apply now, not after those six hours.
	e := newEnv(t, keymanager.Options{})
	var c counting
	e.store.Hook = c.hook
	e.m.Start()
	waitFor(t, func() bool { return e.clock.pending() == 1 })
	e.m.Reconfigure(keymanager.Live{Schedule: keymanager.Schedule{LivenessInterval: time.Minute, CleanupInterval: time.Minute}}, nil)
	waitFor(t, func() bool { return e.clock.pending() == 2 }) // the loop waits again, on the new interval
	e.clock.Advance(time.Minute)
	waitFor(t, func() bool { return c.get("List") > 0 })
}

func TestCloudClockAhead(t *testing.T) {
	// The cloud's clock runs 20 days ahead of ours: another server's key
	// updated 15 cloud-days ago is stale even though our clock says it is
	// from the future.
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	cloud := newFakeClock()
	cloud.Advance(20 * 24 * time.Hour)
	e.store.SetClock(cloud.Now)
	e.m.GenerateKey(ctx, "a", keymanager.ECP256)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ref, _ := e.store.Add(td, "gone", "a", k, cloud.Now().Add(-16*24*time.Hour), cloud.Now().Add(-15*24*time.Hour))
	as, err := e.m.Cleanup(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Ref == ref && a.State != keymanager.StateStale {
			t.Fatalf("state %s, want stale", a.State)
		}
	}
}

func TestConcurrentSigningAndRotation(t *testing.T) {
	e := newEnv(t, keymanager.Options{MaxCreationsPerHour: 100})
	ctx := context.Background()
	e.m.GenerateKey(ctx, "a", keymanager.ECP256)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				d := digest(crypto.SHA256, "x")
				if _, _, err := e.m.SignData(ctx, "a", d, crypto.SHA256); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 10 {
		if _, err := e.m.GenerateKey(ctx, "a", keymanager.ECP256); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestRetireWaitsForInFlightSignature(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	old, _ := e.m.GenerateKey(ctx, "a", keymanager.ECP256)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.store.Hook = func(ctx context.Context, op, _ string) error {
		if op == "Sign" {
			once.Do(func() { close(entered); <-release })
		}
		return nil
	}
	done := make(chan error)
	go func() {
		_, fp, err := e.m.SignData(ctx, "a", digest(crypto.SHA256, "x"), crypto.SHA256)
		if err == nil && fp != old.Fingerprint {
			err = errors.New("signed with the wrong key")
		}
		done <- err
	}()
	<-entered
	if _, err := e.m.GenerateKey(ctx, "a", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // give an eager retirement the chance to run
	if n := len(e.store.Refs()); n != 2 {
		t.Fatalf("old generation retired while a signature was in flight (%d keys left)", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("in-flight SignData: %v", err)
	}
	waitFor(t, func() bool { return len(e.store.Refs()) == 1 })
}

func TestPlan(t *testing.T) {
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	gens := []keymanager.Generation{
		{KeyID: "a", Ref: "a1", ServerID: "me", Created: now.Add(-3 * day), Updated: now.Add(-3 * day)},
		{KeyID: "a", Ref: "a2", ServerID: "me", Created: now.Add(-1 * day), Updated: now.Add(-1 * day)},
		{KeyID: "b", Ref: "b1", ServerID: "me", Created: now.Add(-30 * day), Updated: now.Add(-30 * day)},
		{KeyID: "a", Ref: "o1", ServerID: "other", Created: now.Add(-30 * day), Updated: now.Add(-16 * day)},
		{KeyID: "a", Ref: "o2", ServerID: "other2", Created: now.Add(-30 * day), Updated: now.Add(-13 * day)},
	}
	want := map[string]keymanager.State{"a1": keymanager.StateSuperseded, "a2": keymanager.StateInUse, "b1": keymanager.StateInUse, "o1": keymanager.StateStale, "o2": keymanager.StateForeign}
	for _, a := range keymanager.Plan(gens, "me", now, keymanager.Schedule{}) {
		if a.State != want[a.Ref] || a.Retire != (a.State == keymanager.StateSuperseded || a.State == keymanager.StateStale) {
			t.Errorf("%s: state %s retire %v; want %s", a.Ref, a.State, a.Retire, want[a.Ref])
		}
	}
	// A local clock 20 days behind the cloud still sees o1 as stale.
	for _, a := range keymanager.Plan(gens, "me", now.Add(-20*day), keymanager.Schedule{}) {
		if a.Ref == "o1" && a.State != keymanager.StateStale {
			t.Errorf("o1 with a slow clock: %s", a.State)
		}
	}
}

// TestCleanupRetiresKeysOfFailedCreations checks that a key the cloud made
// for a GenerateKey that failed (its answer lost) is retired by the next
// cleanup pass, while a key with this server's ID made at another time
// (another process) is still left alone as a conflict.
func TestCleanupRetiresKeysOfFailedCreations(t *testing.T) {
	e := newEnv(t, keymanager.Options{})
	ctx := context.Background()
	if _, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256); err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var orphan string
	e.store.Hook = func(_ context.Context, op, keyID string) error {
		if op != "Create" {
			return nil
		}
		// The cloud makes the key; its answer never arrives.
		orphan, _ = e.store.Add(td, "server-a", keyID, k, e.clock.Now(), e.clock.Now())
		return keymanager.Errorf(codes.Unavailable, "connection reset")
	}
	_, err := e.m.GenerateKey(ctx, "x509-CA-A", keymanager.ECP256)
	wantCode(t, err, codes.Unavailable, "connection reset")
	e.store.Hook = nil

	e.clock.Advance(time.Hour)
	other, _ := e.store.Add(td, "server-a", "x509-CA-A", k, e.clock.Now(), e.clock.Now())

	as, err := e.m.Cleanup(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]keymanager.State{}
	for _, a := range as {
		states[a.Ref] = a.State
	}
	if states[orphan] != keymanager.StateSuperseded || states[other] != keymanager.StateConflict {
		t.Fatalf("states = %v; want the failed creation's key %s superseded and %s a conflict", states, orphan, other)
	}
	refs := strings.Join(e.store.Refs(), " ")
	if strings.Contains(refs, orphan) || !strings.Contains(refs, other) {
		t.Fatalf("after cleanup: %s", refs)
	}
	if _, _, err := e.m.SignData(ctx, "x509-CA-A", digest(crypto.SHA256, "x"), crypto.SHA256); err != nil {
		t.Fatalf("the served key stopped signing: %v", err)
	}
}
