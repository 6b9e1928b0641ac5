package conformance

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

// Manager returns a loaded engine.Manager over the backend of kind that
// plugin_data hcl selects, opened as the plugin opens it, for a backend's
// in-process tests and benchmarks: what Run checks through the binary,
// without the SPIRE boundary. env is the environment the plugin process
// would get (an emulator's CA and endpoints), set for the test's duration.
// The trust domain is example.org and the server ID is the one hcl names.
func Manager(tb testing.TB, hcl string, kind config.Kind, env []string) *engine.Manager {
	tb.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		tb.Setenv(k, v)
	}
	const td = "example.org"
	cfg, err := config.Parse(hcl, td, []config.Kind{kind})
	if err != nil {
		tb.Fatal(err)
	}
	id, err := cfg.ServerID(false)
	if err != nil || id == "" {
		tb.Fatalf("plugin_data must name the server ID with key_identifier_value (%v)", err)
	}
	ctx := context.Background()
	backend, err := cfg.Backend.Open(ctx, config.OpenParams{TrustDomain: td, ServerID: id, Logger: hclog.NewNullLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := engine.New(engine.Options{Backend: backend, ServerID: id})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	if err := m.Load(ctx); err != nil {
		tb.Fatal(err)
	}
	return m
}
