package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/bench/internal/cloudkinds"
	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/internal/manualclock"
)

// errNoBackend says a cloud backend is not part of this build yet.
var errNoBackend = errors.New("backend not in this build")

// openFromPluginData builds c's backend in this process from the same
// plugin_data the binary gets (config.Parse, then Backend.Open).
func openFromPluginData(ctx context.Context, c cloud, serverID string) (engine.Backend, error) {
	kind, ok := cloudkinds.ByName()[c.name()]
	if !ok {
		return nil, fmt.Errorf("the %s %w", c.name(), errNoBackend)
	}
	// The backend reads the environment the plugin process would get
	// (Azure: AZURE_AUTHORITY_HOST for a loopback vault, SSL_CERT_FILE for
	// the emulator's CA); here the harness is that process. Go reads
	// SSL_CERT_FILE once, so one run holds one Key Vault emulator.
	for _, kv := range c.env() {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return nil, fmt.Errorf("environment for the in-process backend: %w", err)
		}
	}
	cfg, err := config.Parse(c.pluginData(serverID, ""), trustDomain, []config.Kind{kind})
	if err != nil {
		return nil, fmt.Errorf("plugin_data: %w", err)
	}
	b, err := cfg.Backend.Open(ctx, config.OpenParams{TrustDomain: trustDomain, ServerID: serverID, Logger: hclog.NewNullLogger()})
	if err != nil {
		return nil, fmt.Errorf("opening the %s backend: %w", c.name(), err)
	}
	return b, nil
}

// inProcess is a Manager over c's real backend with a fake clock that moves
// together with the emulator's.
type inProcess struct {
	*engine.Manager
	clock   *manualclock.Clock
	cloud   cloud
	retired *retireCounter
}

func newEngine(ctx context.Context, c cloud, serverID string) (*inProcess, error) {
	// The fake clock starts at the emulator's time, so that the engine's
	// estimate of the cloud's clock starts right.
	clock := manualclock.New(c.now())
	b, err := c.backend(ctx, serverID, clock.Now)
	if err != nil {
		return nil, err
	}
	retired := &retireCounter{}
	m, err := engine.New(engine.Options{Backend: b, ServerID: serverID, Clock: clock, Metrics: retired})
	if err != nil {
		return nil, err
	}
	if err := m.Load(ctx); err != nil {
		m.Close()
		return nil, fmt.Errorf("loading: %w", err)
	}
	return &inProcess{Manager: m, clock: clock, cloud: c, retired: retired}, nil
}

// advance moves the engine's clock and the emulator's by d.
func (e *inProcess) advance(d time.Duration) {
	e.clock.Advance(d)
	e.cloud.advance(d)
}

// checkRetired runs the background tasks that are due (as Start's loop
// would) and reports an error unless n generations were retired so far.
func (e *inProcess) checkRetired(ctx context.Context, n int) error {
	e.RunDue(ctx)
	if got := e.retired.count(); got < n {
		return fmt.Errorf("%d generations retired, want %d", got, n)
	}
	return nil
}

// retireCounter is a engine.Metrics that counts retired generations.
type retireCounter struct {
	mu sync.Mutex
	n  int
}

func (r *retireCounter) IncrCounter(key []string, v float32, _ ...engine.Label) {
	if len(key) == 3 && key[1] == "keys" && key[2] == "retired" {
		r.mu.Lock()
		r.n += int(v)
		r.mu.Unlock()
	}
}

func (r *retireCounter) MeasureSince([]string, time.Time, ...engine.Label) {}

func (r *retireCounter) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
