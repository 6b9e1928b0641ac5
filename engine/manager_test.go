package engine_test

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

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
)

func TestGenerateServeAndSign(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	tests := []struct {
		id   string
		kt   engine.KeyType
		opts []crypto.SignerOpts
	}{
		{"x509-CA-A", engine.ECP256, []crypto.SignerOpts{crypto.SHA256, crypto.SHA384}},
		{"JWT-Signer-A", engine.ECP384, []crypto.SignerOpts{crypto.SHA384}},
		{"rsa", engine.RSA2048, []crypto.SignerOpts{
			crypto.SHA256, crypto.SHA512,
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256},
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA384},
			&rsa.PSSOptions{SaltLength: 64, Hash: crypto.SHA512},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			pk, err := m.GenerateKey(ctx, tt.id, tt.kt)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(pk.PKIX)
			if pk.ID != tt.id || pk.Type != tt.kt || pk.Fingerprint != hex.EncodeToString(sum[:]) {
				t.Fatalf("public key = %+v", pk)
			}
			got, err := m.GetPublicKey(ctx, tt.id)
			if err != nil || got.Fingerprint != pk.Fingerprint {
				t.Fatalf("GetPublicKey = %+v, %v", got, err)
			}
			for _, o := range tt.opts {
				d := digest(o.HashFunc(), "hello")
				sig, fp, err := m.SignData(ctx, tt.id, d, o)
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
	all, _ := m.GetPublicKeys(ctx)
	if len(all) != 3 || all[0].ID != "JWT-Signer-A" || all[2].ID != "x509-CA-A" {
		t.Fatalf("GetPublicKeys = %v", all)
	}
	// A generation is served only once it is committed: its record holds
	// this process's committed lease, not the pending one of the creation.
	for _, pk := range all {
		if got := e.holders(t, e.refOf(t, pk)); len(got) != 1 || got[0] != m.Holder() {
			t.Errorf("%s: committed leases %v, want this process's", pk.ID, got)
		}
	}
}

// TestRotationRetiresSupersededAfterSettling replaces a key: the new one
// has a new fingerprint; the old generation is kept while it settles (the
// rotation's own retirement task finds it settling) and retired by the
// background work once the settle period has passed.
func TestRotationRetiresSupersededAfterSettling(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	first := mustGenerate(t, m, "x509-CA-A")
	x1 := e.refOf(t, first)
	second := mustGenerate(t, m, "x509-CA-A")
	if first.Fingerprint == second.Fingerprint {
		t.Fatal("replacement kept the fingerprint")
	}
	if fp := mustSign(t, m, "x509-CA-A"); fp != second.Fingerprint {
		t.Fatalf("signs with %s, want the new key %s", fp, second.Fingerprint)
	}
	if next := m.NextDue(); next.IsZero() || next.After(e.clock.Now()) {
		t.Fatalf("the superseded generation's retirement is due at %v, want now (%v)", next, e.clock.Now())
	}
	m.RunDue(ctx)
	if !e.has(x1) {
		t.Fatal("the superseded generation was retired before it settled")
	}
	e.clock.Advance(settle - time.Second)
	m.RunDue(ctx)
	if !e.has(x1) {
		t.Fatal("the superseded generation was retired a second before it settled")
	}
	e.clock.Advance(2 * time.Second)
	m.RunDue(ctx)
	if e.has(x1) {
		t.Fatalf("the superseded generation %s is still there after the settle period", x1)
	}
	if n := len(e.store.Refs()); n != 1 {
		t.Fatalf("%d generations left, want the served one", n)
	}
	mustSign(t, m, "x509-CA-A")
}

// TestSettleOption checks Options.Settle: zero is the default, a longer one
// is used as is, and one shorter than the lease read-back plus four
// budgets is raised to that.
func TestSettleOption(t *testing.T) {
	tests := []struct {
		name   string
		budget time.Duration
		settle time.Duration
		want   time.Duration
	}{
		{"default", 0, 0, engine.DefaultSettle},
		{"longer", 0, 2 * time.Hour, 2 * time.Hour},
		{"shorter than six budgets", 0, time.Second, 6 * engine.DefaultBudget},
		{"short budget", 100 * time.Millisecond, 10 * time.Minute, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.open(t, "server-a", engine.Options{Settle: tt.settle, Budget: tt.budget})
			ctx := context.Background()
			x1 := e.refOf(t, mustGenerate(t, m, "k"))
			mustGenerate(t, m, "k")
			m.RunDue(ctx) // the retirement task runs at once: it ends this process's lease on x1
			for _, l := range e.gen(t, x1).Leases {
				if l.Holder == m.Holder() {
					t.Fatalf("the process still holds a lease on the generation it superseded: %+v", l)
				}
			}
			e.clock.Advance(tt.want - time.Millisecond)
			m.RunDue(ctx)
			mustCleanup(t, m)
			m.RunDue(ctx)
			if !e.has(x1) {
				t.Fatalf("retired before the settle period %v", tt.want)
			}
			e.clock.Advance(2 * time.Second)
			m.RunDue(ctx)
			if e.has(x1) {
				t.Fatalf("not retired once the settle period %v passed", tt.want)
			}
		})
	}
}

func TestSigningContinuesWhileGenerateKeyBlocks(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	old := mustGenerate(t, m, "x509-CA-A")
	entered, release := make(chan struct{}), make(chan struct{})
	e.setHook(func(ctx context.Context, op, _ string) error {
		if op == "Create" {
			close(entered)
			<-release
		}
		return nil
	})
	done := make(chan engine.PublicKey)
	go func() {
		pk, err := m.GenerateKey(ctx, "x509-CA-A", engine.ECP256)
		if err != nil {
			t.Error(err)
		}
		done <- pk
	}()
	<-entered
	// GenerateKey is blocked inside the backend: the old key signs, and
	// GetPublicKey(s) answer, without waiting for it.
	d := digest(crypto.SHA256, "during rotation")
	sig, fp, err := m.SignData(ctx, "x509-CA-A", d, crypto.SHA256)
	if err != nil || fp != old.Fingerprint {
		t.Fatalf("SignData during rotation = %s, %v; want old key %s", fp, err, old.Fingerprint)
	}
	verifyWith(t, old.PKIX, d, sig, crypto.SHA256)
	if _, err := m.GetPublicKeys(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	nk := <-done
	_, fp, err = m.SignData(ctx, "x509-CA-A", d, crypto.SHA256)
	if err != nil || fp != nk.Fingerprint || fp == old.Fingerprint {
		t.Fatalf("after rotation SignData fingerprint = %s, %v; want new %s", fp, err, nk.Fingerprint)
	}
}

// TestLoadPicksNewestAndRetiresOthers lays out three generations as an
// older plugin would (no leases: taken as committed): Load serves the
// newest, and the background work it schedules retires the two older
// ones, settled long ago. Other servers' and other trust domains' keys are
// left alone.
func TestLoadPicksNewestAndRetiresOthers(t *testing.T) {
	e := newEnv(t)
	base := e.clock.Now().Add(-48 * time.Hour)
	var keys []*ecdsa.PrivateKey
	var refs []string
	for i := range 3 {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		keys = append(keys, k)
		created := base.Add(time.Duration(i) * time.Hour)
		ref, err := e.store.Add(td, "server-a", "x509-CA-A", k, created, created)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherServer, _ := e.store.Add(td, "server-b", "x509-CA-A", other, base.Add(5*time.Hour), e.clock.Now())
	otherDomain, _ := e.store.Add("other.org", "server-a", "x509-CA-A", other, base.Add(5*time.Hour), e.clock.Now())

	m := e.open(t, "server-a", engine.Options{})
	pk, err := m.GetPublicKey(context.Background(), "x509-CA-A")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := x509.MarshalPKIXPublicKey(keys[2].Public())
	if string(pk.PKIX) != string(want) {
		t.Fatal("Load did not pick the newest generation")
	}
	if got := e.holders(t, refs[2]); len(got) != 1 || got[0] != m.Holder() {
		t.Fatalf("the adopted generation's leases = %v, want this process's (it is claimed before it is served)", got)
	}
	m.RunDue(context.Background())
	for _, r := range refs[:2] {
		if e.has(r) {
			t.Errorf("superseded generation %s not retired", r)
		}
	}
	for _, r := range []string{refs[2], otherServer, otherDomain} {
		if !e.has(r) {
			t.Errorf("%s was retired", r)
		}
	}
}

func TestLoadRefusesDisabledKey(t *testing.T) {
	e := newEnv(t)
	ref := e.addKey(t, "server-a", "x509-CA-A", e.clock.Now(), e.clock.Now())
	e.store.SetDisabled(ref, true)
	m := e.newManager(t, "server-a", engine.Options{})
	wantCode(t, m.Load(context.Background()), codes.FailedPrecondition, ref)
}

// TestLoadFailureReleasesLeases fails Load after it claimed a generation:
// the lease it wrote is removed again, so a successor may retire the
// generation once superseded.
func TestLoadFailureReleasesLeases(t *testing.T) {
	e := newEnv(t)
	ref := e.addKey(t, "server-a", "x509-CA-A", e.clock.Now(), e.clock.Now())
	e.setHook(func(_ context.Context, op, _ string) error {
		if op == "Fetch" {
			return engine.Errorf(codes.Unavailable, "no answer")
		}
		return nil
	})
	m := e.newManager(t, "server-a", engine.Options{})
	wantCode(t, m.Load(context.Background()), codes.Unavailable, "no answer")
	if got := e.holders(t, ref); len(got) != 0 {
		t.Fatalf("leases left after a failed Load: %v", got)
	}
}

// TestLoadSkipsGenerationsOfFailedCreations: a generation whose only lease
// is pending was never committed (its creation failed, or its creator died
// before committing), so a starting server never serves it; the committed
// one before it is served.
func TestLoadSkipsGenerationsOfFailedCreations(t *testing.T) {
	e := newFileEnv(t)
	ctx := context.Background()
	a := e.open(t, "server-a", engine.Options{})
	first := mustGenerate(t, a, "x509-CA-A")
	if err := e.store.InjectFault(memory.Fault{Op: "Create", Phase: memory.PhaseAfter, Code: codes.Unavailable, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GenerateKey(ctx, "x509-CA-A", engine.ECP256); engine.Code(err) != codes.Unavailable {
		t.Fatalf("GenerateKey with its answer lost = %v", err)
	}
	if _, err := a.GenerateKey(ctx, "JWT-Signer-A", engine.ECP256); err != nil {
		t.Fatal(err)
	}
	if err := e.store.InjectFault(memory.Fault{Op: "Create", Phase: memory.PhaseAfter, Code: codes.DeadlineExceeded, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GenerateKey(ctx, "only-failed", engine.ECP256); err == nil {
		t.Fatal("want an error")
	}
	e.clock.Advance(time.Minute)
	b := e.open(t, "server-a", engine.Options{})
	if pk, _ := b.GetPublicKey(ctx, "x509-CA-A"); pk.Fingerprint != first.Fingerprint {
		t.Fatal("a restart adopted the generation of a failed creation")
	}
	if _, err := b.GetPublicKey(ctx, "only-failed"); engine.Code(err) != codes.NotFound {
		t.Fatalf("a key ID whose only generation was never committed: GetPublicKey = %v, want NotFound", err)
	}
}

func TestCreateRateGuard(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{MaxCreationsPerHour: 3})
	ctx := context.Background()
	for range 3 {
		mustGenerate(t, m, "x509-CA-A")
		e.clock.Advance(10 * time.Second)
	}
	_, err := m.GenerateKey(ctx, "x509-CA-A", engine.ECP256)
	wantCode(t, err, codes.ResourceExhausted, "max_key_creations_per_hour = 3")
	if !strings.Contains(err.Error(), "next creation is allowed at") {
		t.Errorf("error does not say when: %v", err)
	}
	// Other key IDs are not affected.
	mustGenerate(t, m, "JWT-Signer-A")
	e.clock.Advance(time.Hour)
	if _, err := m.GenerateKey(ctx, "x509-CA-A", engine.ECP256); err != nil {
		t.Fatalf("after an hour: %v", err)
	}
	// A storm: every 10 s for two hours creates at most the limit in any
	// hour of the cloud's creation times.
	e2 := newEnv(t)
	m2 := e2.open(t, "server-a", engine.Options{MaxCreationsPerHour: 3})
	var created []time.Time
	for range 720 {
		if _, err := m2.GenerateKey(ctx, "x509-CA-B", engine.ECP256); err == nil {
			created = append(created, e2.clock.Now())
		}
		e2.clock.Advance(10 * time.Second)
	}
	checkHourlyBound(t, created, 3)
	if len(created) < 3 {
		t.Fatalf("the storm created %d keys in two hours", len(created))
	}
	// Reconfigure raises the limit live.
	m2.Reconfigure(engine.Live{MaxCreationsPerHour: 100}, nil)
	if _, err := m2.GenerateKey(ctx, "x509-CA-B", engine.ECP256); err != nil {
		t.Fatalf("after raising the limit: %v", err)
	}
}

// checkHourlyBound fails if any hour holds more than max of the times.
func checkHourlyBound(t *testing.T, times []time.Time, max int) {
	t.Helper()
	for i, from := range times {
		n := 0
		for _, c := range times[i:] {
			if c.Sub(from) < time.Hour {
				n++
			}
		}
		if n > max {
			t.Fatalf("%d creations in the hour from %s, max %d (all: %v)", n, from.Format(time.TimeOnly), max, times)
		}
	}
}

func TestRequestValidation(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	mustGenerate(t, m, "ec")
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
		{"nil options", "ec", digest(crypto.SHA256, "x"), nil, codes.InvalidArgument, "no hash"},
		{"md5", "ec", make([]byte, 16), crypto.MD5, codes.InvalidArgument, "unsupported hash"},
		{"pss on ec", "ec", digest(crypto.SHA256, "x"), &rsa.PSSOptions{Hash: crypto.SHA256}, codes.InvalidArgument, "PSS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := m.SignData(ctx, tt.id, tt.digest, tt.opts)
			wantCode(t, err, tt.code, tt.substr)
		})
	}
	_, err := m.GenerateKey(ctx, "x", engine.KeyTypeUnspecified)
	wantCode(t, err, codes.InvalidArgument, "unsupported key type")
	_, err = m.GenerateKey(ctx, "", engine.ECP256)
	wantCode(t, err, codes.InvalidArgument, "empty")
	_, err = m.GetPublicKey(ctx, "nope")
	wantCode(t, err, codes.NotFound, "nope")
	_, err = m.GetPublicKey(ctx, "")
	wantCode(t, err, codes.InvalidArgument, "empty")
}

func TestPSSSaltLengths(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	pk, err := m.GenerateKey(ctx, "rsa", engine.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	d := sha512.Sum384([]byte("x"))
	for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, 48} {
		o := &rsa.PSSOptions{SaltLength: salt, Hash: crypto.SHA384}
		sig, _, err := m.SignData(ctx, "rsa", d[:], o)
		if err != nil {
			t.Fatalf("salt %d: %v", salt, err)
		}
		verifyWith(t, pk.PKIX, d[:], sig, o)
	}
	_, _, err = m.SignData(ctx, "rsa", d[:], &rsa.PSSOptions{SaltLength: 20, Hash: crypto.SHA384})
	wantCode(t, err, codes.InvalidArgument, "salt length 20")
}

// lying wraps a backend and corrupts its signatures.
type lying struct{ engine.Backend }

func (l lying) Sign(ctx context.Context, g engine.Generation, d []byte, o crypto.SignerOpts) ([]byte, error) {
	sig, err := l.Backend.Sign(ctx, g, d, o)
	if err == nil {
		sig[len(sig)/2] ^= 0xff
	}
	return sig, err
}

func TestBadSignatureIsNeverReturned(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "s", engine.Options{Backend: lying{e.store.Backend(td, "s")}})
	mustGenerate(t, m, "k")
	sig, _, err := m.SignData(context.Background(), "k", digest(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.Internal, "does not verify")
	if sig != nil {
		t.Fatal("a bad signature was returned")
	}
}

func TestBudgetEndsBeforeCallerDeadline(t *testing.T) {
	ctx := context.Background()
	neverAnswers := func(ctx context.Context, op, _ string) error {
		if op == "Sign" {
			<-ctx.Done() // a cloud that never answers
			return ctx.Err()
		}
		return nil
	}
	// The budget ends the call.
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{Budget: 100 * time.Millisecond})
	mustGenerate(t, m, "k")
	e.setHook(neverAnswers)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err := m.SignData(cctx, "k", digest(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.DeadlineExceeded, "key k")
	if time.Since(start) > 10*time.Second {
		t.Fatalf("SignData took %v with a 100ms budget", time.Since(start))
	}
	// The caller's own deadline, less a margin, ends it when it is sooner
	// than the budget.
	e2 := newEnv(t)
	m2 := e2.open(t, "server-a", engine.Options{})
	mustGenerate(t, m2, "k")
	e2.setHook(neverAnswers)
	short, cancel2 := context.WithTimeout(ctx, 2100*time.Millisecond)
	defer cancel2()
	if _, _, err := m2.SignData(short, "k", digest(crypto.SHA256, "x"), crypto.SHA256); engine.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("SignData = %v, want DeadlineExceeded", err)
	}
	if short.Err() != nil {
		t.Fatal("the engine used the whole caller deadline; it must keep a margin")
	}
}

func TestBackendCodesArePreserved(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	mustGenerate(t, m, "k")
	for _, code := range []codes.Code{codes.PermissionDenied, codes.ResourceExhausted, codes.Unavailable, codes.FailedPrecondition} {
		e.setHook(func(context.Context, string, string) error {
			return engine.Errorf(code, "cloud says no")
		})
		_, _, err := m.SignData(ctx, "k", digest(crypto.SHA256, "x"), crypto.SHA256)
		wantCode(t, err, code, "cloud says no")
		_, err = m.GenerateKey(ctx, "k", engine.ECP256)
		wantCode(t, err, code, "key k")
	}
	e.setHook(func(context.Context, string, string) error { return errors.New("bug") })
	_, _, err := m.SignData(ctx, "k", digest(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.Internal, "bug")
	// The key set survived every failure.
	e.setHook(nil)
	mustSign(t, m, "k")
}

// TestCommitFailure fails the lease write that commits a new generation:
// GenerateKey fails, the previous key stays served, and the new generation
// stays pending (no restart adopts it). A commit whose answer was lost but
// took effect is a commit.
func TestCommitFailure(t *testing.T) {
	ctx := context.Background()
	t.Run("refused", func(t *testing.T) {
		e := newEnv(t)
		m := e.open(t, "server-a", engine.Options{})
		first := mustGenerate(t, m, "k")
		e.setHook(func(_ context.Context, op, _ string) error {
			if op == "KeepAlive" {
				return engine.Errorf(codes.Unavailable, "throttled")
			}
			return nil
		})
		_, err := m.GenerateKey(ctx, "k", engine.ECP256)
		wantCode(t, err, codes.Unavailable, "committing")
		e.setHook(nil)
		if fp := mustSign(t, m, "k"); fp != first.Fingerprint {
			t.Fatal("a generation whose commit failed is served")
		}
		n := e.open(t, "server-a", engine.Options{})
		if pk, _ := n.GetPublicKey(ctx, "k"); pk.Fingerprint != first.Fingerprint {
			t.Fatal("a restart adopted a generation that was never committed")
		}
	})
	t.Run("answer lost", func(t *testing.T) {
		e := newFileEnv(t)
		m := e.open(t, "server-a", engine.Options{})
		mustGenerate(t, m, "k")
		if err := e.store.InjectFault(memory.Fault{Op: "KeepAlive", Phase: memory.PhaseAfter, Code: codes.Unavailable, Count: 1}); err != nil {
			t.Fatal(err)
		}
		second, err := m.GenerateKey(ctx, "k", engine.ECP256)
		if err != nil {
			t.Fatalf("a commit that took effect failed GenerateKey: %v", err)
		}
		if fp := mustSign(t, m, "k"); fp != second.Fingerprint {
			t.Fatal("the committed generation is not served")
		}
	})
}

// TestCleanup assesses a listing with other servers' keys and one of this
// server's that this process did not make.
func TestCleanup(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	now := e.clock.Now()
	staleRef := e.addKey(t, "server-b", "x509-CA-A", now.Add(-30*24*time.Hour), now.Add(-15*24*time.Hour))
	freshRef := e.addKey(t, "server-c", "x509-CA-A", now.Add(-30*24*time.Hour), now.Add(-13*24*time.Hour))
	served := e.refOf(t, mustGenerate(t, m, "x509-CA-A"))
	// A generation with this server's ID that this process did not make
	// (another process using the same ID, or an older plugin): the newest
	// committed generation of its key ID, which a server starting now
	// would adopt. It is current, never retired.
	otherRef := e.addKey(t, "server-a", "JWT-Signer-A", now, now)

	as, err := m.Cleanup(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]engine.State{staleRef: engine.StateStale, freshRef: engine.StateForeign, otherRef: engine.StateCurrent, served: engine.StateInUse}
	for _, a := range as {
		if a.State != want[a.Ref] || a.Retire != (a.State == engine.StateStale) {
			t.Errorf("%s: %s (retire %v), want %s", a.Ref, a.State, a.Retire, want[a.Ref])
		}
	}
	if len(e.store.Refs()) != 4 {
		t.Fatal("dry run retired keys")
	}
	mustCleanup(t, m)
	if e.has(staleRef) || !e.has(freshRef) || !e.has(otherRef) || !e.has(served) {
		t.Fatalf("after cleanup: %v", e.store.Refs())
	}
}

// TestCleanupSparesKeyBeingCreated runs a cleanup pass while a creation is
// between its Create and its commit: the new generation, pending, is
// settling and kept; once committed it is served and never retired.
func TestCleanupSparesKeyBeingCreated(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-x", engine.Options{})
	ctx := context.Background()
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
	as, err := m.Cleanup(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].State != engine.StateSettling || as[0].Retire {
		t.Fatalf("assessment during creation = %+v", as)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ref := as[0].Ref
	e.clock.Advance(2 * time.Hour)
	m.RunDue(ctx)
	mustCleanup(t, m)
	if !e.has(ref) {
		t.Fatal("the served generation was retired")
	}
	mustSign(t, m, "k")
}

func TestKeepAliveOnlyTouchesOldKeys(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	ref := e.refOf(t, mustGenerate(t, m, "a"))
	var c counting
	e.setHook(c.hook)
	if err := m.KeepAlive(ctx); err != nil || c.get("KeepAlive") != 0 {
		t.Fatalf("fresh key kept alive: %d calls, %v", c.get("KeepAlive"), err)
	}
	e.clock.Advance(25 * time.Hour)
	if err := m.KeepAlive(ctx); err != nil || c.get("KeepAlive") != 1 {
		t.Fatalf("old key: %d calls, %v", c.get("KeepAlive"), err)
	}
	if g := e.gen(t, ref); !g.Updated.Equal(e.clock.Now()) {
		t.Fatalf("Updated = %v after the keep-alive, want %v", g.Updated, e.clock.Now())
	}
	if err := m.KeepAlive(ctx); err != nil || c.get("KeepAlive") != 1 {
		t.Fatalf("just-refreshed key touched again: %d calls", c.get("KeepAlive"))
	}
	// The keep-alive's lease is read back once, two budgets later.
	e.clock.Advance(leaseCheck)
	refreshes := c.get("Refresh")
	m.RunDue(ctx)
	if c.get("Refresh") != refreshes+1 || c.get("KeepAlive") != 1 {
		t.Fatalf("lease read-back: %d reads, %d writes", c.get("Refresh")-refreshes, c.get("KeepAlive")-1)
	}
}

func TestSchedulerRunsPasses(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{Schedule: engine.Schedule{LivenessInterval: time.Hour, CleanupInterval: 2 * time.Hour}})
	x1 := e.refOf(t, mustGenerate(t, m, "a"))
	mustGenerate(t, m, "a")
	now := e.clock.Now()
	staleRef := e.addKey(t, "gone", "a", now.Add(-20*24*time.Hour), now.Add(-20*24*time.Hour))
	var c counting
	e.setHook(c.hook)
	m.Start()
	for range 30 {
		waitFor(t, func() bool { return e.clock.Pending() > 0 })
		e.clock.Advance(time.Hour)
	}
	waitFor(t, func() bool { return !e.has(staleRef) && !e.has(x1) })
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
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	var c counting
	e.setHook(c.hook)
	m.Start()
	waitFor(t, func() bool { return e.clock.Pending() == 1 })
	m.Reconfigure(engine.Live{Schedule: engine.Schedule{LivenessInterval: time.Minute, CleanupInterval: time.Minute}}, nil)
	waitFor(t, func() bool { return e.clock.Pending() == 2 }) // the loop waits again, on the new interval
	e.clock.Advance(time.Minute)
	waitFor(t, func() bool { return c.get("List") > 0 })
}

// TestCloudClockAhead: the cloud's clock runs 20 days ahead of ours. Another
// server's key updated 15 cloud-days ago is stale even though our clock
// says it is from the future; one updated a cloud-hour ago is not.
func TestCloudClockAhead(t *testing.T) {
	e := newEnv(t)
	cloud := newFakeClock()
	cloud.Advance(20 * 24 * time.Hour)
	e.store.SetClock(cloud.Now)
	m := e.open(t, "server-a", engine.Options{})
	mustGenerate(t, m, "a")
	gone := e.addKey(t, "gone", "a", cloud.Now().Add(-16*24*time.Hour), cloud.Now().Add(-15*24*time.Hour))
	alive := e.addKey(t, "alive", "a", cloud.Now().Add(-16*24*time.Hour), cloud.Now().Add(-time.Hour))
	as, err := m.Cleanup(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	st := states(as)
	if st[gone] != engine.StateStale || st[alive] != engine.StateForeign {
		t.Fatalf("states %v; want %s stale and %s foreign", st, gone, alive)
	}
}

func TestConcurrentSigningAndRotation(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{MaxCreationsPerHour: 100})
	ctx := context.Background()
	mustGenerate(t, m, "a")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, _, err := m.SignData(ctx, "a", digest(crypto.SHA256, "x"), crypto.SHA256); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 10 {
		mustGenerate(t, m, "a")
		m.RunDue(ctx)
		e.clock.Advance(time.Minute)
	}
	wg.Wait()
}

// TestInFlightSignatureOutlivesRotation signs with a key while it is
// superseded: the signature completes with the old key, and the old
// generation is retired only after it settled.
func TestInFlightSignatureOutlivesRotation(t *testing.T) {
	e := newEnv(t)
	m := e.open(t, "server-a", engine.Options{})
	ctx := context.Background()
	old := mustGenerate(t, m, "a")
	x1 := e.refOf(t, old)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.setHook(func(ctx context.Context, op, _ string) error {
		if op == "Sign" {
			once.Do(func() { close(entered); <-release })
		}
		return nil
	})
	done := make(chan error)
	go func() {
		_, fp, err := m.SignData(ctx, "a", digest(crypto.SHA256, "x"), crypto.SHA256)
		if err == nil && fp != old.Fingerprint {
			err = errors.New("signed with the wrong key")
		}
		done <- err
	}()
	<-entered
	mustGenerate(t, m, "a")
	m.RunDue(ctx)
	mustCleanup(t, m)
	if !e.has(x1) {
		t.Fatal("old generation retired while a signature was in flight")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("in-flight SignData: %v", err)
	}
	e.clock.Advance(settle + time.Second)
	m.RunDue(ctx)
	if e.has(x1) {
		t.Fatal("old generation not retired once settled")
	}
}
