package azurekv

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

const testTD = "example.org"

// startEmulator starts an emulator for one test.
func startEmulator(t *testing.T, opts keyvault.Options) *keyvault.Server {
	t.Helper()
	srv, err := keyvault.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting the emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// emuConfig is a checked configuration and the network that reaches the
// emulator (its TLS trust and authority).
type emuConfig struct {
	*Config
	net network
}

// open opens the configuration over its network.
func (c emuConfig) open(ctx context.Context, p config.OpenParams) (*Backend, error) {
	return c.Config.open(ctx, p, c.net)
}

// testConfig is a checked configuration reaching vault through the
// emulator's TLS trust and authority, with the main app's client secret.
func testConfig(t *testing.T, srv *keyvault.Server, vault string, edit func(*Config)) emuConfig {
	t.Helper()
	c := &Config{
		KeyVaultURI: srv.VaultURL(vault),
		TenantID:    srv.TenantID(),
		AppID:       srv.ClientID(),
		AppSecret:   srv.ClientSecret(),
	}
	if edit != nil {
		edit(c)
	}
	if err := c.Check(testTD); err != nil {
		t.Fatalf("Check: %v", err)
	}
	return emuConfig{Config: c, net: network{transport: srv.HTTPClient(), authorityHost: srv.AuthorityHost()}}
}

// openBackend opens c for serverID, recording metrics.
func openBackend(t *testing.T, c emuConfig, serverID string) (*Backend, *recordedMetrics) {
	t.Helper()
	m := &recordedMetrics{}
	b, err := c.open(context.Background(), config.OpenParams{
		TrustDomain: testTD,
		ServerID:    serverID,
		Logger:      hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}}),
		Metrics:     m,
	})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return b, m
}

// callCtx gives one backend call the engine's budget.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), engine.DefaultBudget)
	t.Cleanup(cancel)
	return ctx
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// recordedMetrics counts the backend's counters by joined name.
type recordedMetrics struct {
	mu       sync.Mutex
	counters map[string]float32
}

func (m *recordedMetrics) IncrCounter(key []string, val float32, _ ...engine.Label) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.counters == nil {
		m.counters = map[string]float32{}
	}
	name := ""
	for i, k := range key {
		if i > 0 {
			name += "."
		}
		name += k
	}
	m.counters[name] += val
}

func (m *recordedMetrics) MeasureSince([]string, time.Time, ...engine.Label) {}

func (m *recordedMetrics) get(name string) float32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.counters[name]
}

// testLease is the pending lease a backend test's process records when it
// creates a key, as the engine does.
func testLease() engine.Lease {
	return engine.Lease{Holder: "testproc", Renewed: time.Now().Truncate(time.Millisecond), Pending: true}
}

// createReq is a creation of a key of type kt for id by a backend test's
// process, its first of the hour.
func createReq(id string, kt engine.KeyType) engine.CreateRequest {
	return engine.CreateRequest{KeyID: id, Type: kt, Lease: testLease(), RecentCreations: 1}
}

// deleteNamesFirst fills the default vault with more soft-deleted keys than
// a listing page holds, named to sort before SPIRE's keys: the service's
// listing then starts with an empty page.
func deleteNamesFirst(t *testing.T, srv *keyvault.Server) {
	t.Helper()
	raw := rawClient(t, srv, keyvault.DefaultVaultName)
	for i := range 26 {
		name := fmt.Sprintf("a-gone-%02d", i)
		if _, err := raw.CreateKey(callCtx(t), name, azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.DeleteKey(callCtx(t), name, nil); err != nil {
			t.Fatal(err)
		}
	}
}
