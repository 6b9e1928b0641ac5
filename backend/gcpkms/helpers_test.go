package gcpkms

import (
	"context"
	"crypto"
	"strings"
	"sync"
	"testing"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

const (
	testRing        = "projects/kmskeeper-test/locations/global/keyRings/spire"
	testTrustDomain = "example.org"
)

// startEmulator starts a Cloud KMS emulator on a wall-following clock with
// testRing, and returns it with a raw client for inspecting its state.
func startEmulator(t *testing.T, opts cloudkms.Options) (*cloudkms.Server, *kms.KeyManagementClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if opts.KeyRings == nil {
		opts.KeyRings = []string{testRing}
	}
	srv, err := cloudkms.Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting the emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := kms.NewKeyManagementClient(ctx, srv.ClientOptions()...)
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

// newBackend returns a backend for serverID on the emulator, stamping
// labels with the emulator's clock; mod adjusts its options.
func newBackend(t *testing.T, srv *cloudkms.Server, serverID string, mod ...func(*Options)) *Backend {
	t.Helper()
	opts := Options{
		KeyRing:       testRing,
		TrustDomain:   testTrustDomain,
		ServerID:      serverID,
		ClientOptions: srv.ClientOptions(),
		Now:           srv.Clock().Now,
		WriteInterval: time.Millisecond,
		Logger:        hclog.New(&hclog.LoggerOptions{Name: serverID, Level: hclog.Debug, Output: testWriter{t}}),
	}
	for _, m := range mod {
		m(&opts)
	}
	b, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newManager returns a loaded engine over b, on the emulator's clock.
func newManager(t *testing.T, srv *cloudkms.Server, b *Backend, serverID string, metrics engine.Metrics) *engine.Manager {
	t.Helper()
	m, err := engine.New(engine.Options{
		Backend:  b,
		ServerID: serverID,
		Clock:    emuClock{srv.Clock()},
		Metrics:  metrics,
		Logger:   b.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Load(callCtx(t)); err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// emuClock drives the engine with the emulator's clock, so that moving the
// emulator days ahead moves the engine too.
type emuClock struct{ c *cloudkms.Clock }

func (c emuClock) Now() time.Time                         { return c.c.Now() }
func (c emuClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// runTasks moves the emulator's clock, which the engine and the backend
// follow, to each manager's next background task and runs the tasks then
// due: a superseded generation settles (engine.DefaultSettle) and is
// retired within a few polls instead of after real minutes. Polled
// inside waitFor, it also catches a task that a running manager's own
// loop rescheduled meanwhile.
func runTasks(t *testing.T, srv *cloudkms.Server, ms ...*engine.Manager) {
	t.Helper()
	for _, m := range ms {
		if next := m.NextDue(); !next.IsZero() {
			srv.Clock().Set(next)
		}
		m.RunDue(callCtx(t))
	}
}

// callCtx has SPIRE's 30 s deadline.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// counter records the backend's and engine's counters.
type counter struct {
	mu sync.Mutex
	n  map[string]float32
}

func (c *counter) IncrCounter(key []string, v float32, labels ...engine.Label) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]float32{}
	}
	name := key[len(key)-1]
	for _, l := range labels {
		name += "," + l.Name + "=" + l.Value
	}
	c.n[name] += v
	c.n[key[len(key)-1]] += v
}

func (c *counter) MeasureSince([]string, time.Time, ...engine.Label) {}

func (c *counter) get(name string) float32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

// versions returns the states of a key's versions by name.
func versions(t *testing.T, c *kms.KeyManagementClient, key string) map[string]kmspb.CryptoKeyVersion_CryptoKeyVersionState {
	t.Helper()
	out := map[string]kmspb.CryptoKeyVersion_CryptoKeyVersionState{}
	it := c.ListCryptoKeyVersions(context.Background(), &kmspb.ListCryptoKeyVersionsRequest{Parent: key})
	for {
		v, err := it.Next()
		if err != nil {
			break
		}
		out[v.GetName()] = v.GetState()
	}
	return out
}

// getKey reads a CryptoKey.
func getKey(t *testing.T, c *kms.KeyManagementClient, name string) *kmspb.CryptoKey {
	t.Helper()
	k, err := c.GetCryptoKey(context.Background(), &kmspb.GetCryptoKeyRequest{Name: name})
	if err != nil {
		t.Fatalf("GetCryptoKey(%s): %v", name, err)
	}
	return k
}

// wantCode fails unless err carries code and its message contains every
// fragment.
func wantCode(t *testing.T, err error, code codes.Code, fragments ...string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("err = %v (code %v), want code %v", err, got, code)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("err = %v, want it to mention %q", err, f)
		}
	}
}

// digestOf hashes msg with h.
func digestOf(h crypto.Hash, msg string) []byte {
	w := h.New()
	w.Write([]byte(msg))
	return w.Sum(nil)
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const sha256Hash = crypto.SHA256

// adminClient is a raw client authenticated as an all-powerful account.
func adminClient(t *testing.T, srv *cloudkms.Server) *kms.KeyManagementClient {
	t.Helper()
	opts, err := srv.ClientOptionsAs("admin@kmskeeper-test.iam.gserviceaccount.com")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kms.NewKeyManagementClient(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testLease is the pending lease a backend test's process records with a
// creation.
func testLease() engine.Lease {
	return engine.Lease{Holder: "testproc", Renewed: time.Now().Truncate(time.Millisecond), Pending: true}
}

// createReq is a backend test process's request to create keyID, its
// first creation of the hour.
func createReq(keyID string, t engine.KeyType) engine.CreateRequest {
	return engine.CreateRequest{KeyID: keyID, Type: t, Lease: testLease(), RecentCreations: 1}
}
