package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

const trustDomain = "example.org"

// memoryConfig is plugin_data for the memory backend with its state in dir
// and a fixed server ID.
func memoryConfig(dir string, extra string) string {
	return fmt.Sprintf("memory_backend = %q\nkey_identifier_value = \"server-a\"\n%s", filepath.Join(dir, "vault.json"), extra)
}

// start launches the test binary with opts (Path filled in) and closes it
// at the end of the test.
func start(t *testing.T, opts pluginhost.Options) *pluginhost.Plugin {
	t.Helper()
	if opts.Path == "" {
		opts.Path = bin.test
	}
	if raceEnabled {
		// The race runtime otherwise sleeps a second at exit.
		opts.Env = append(opts.Env, "GORACE=atexit_sleep_ms=0")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p, err := pluginhost.Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Logf("Close: %v", err)
		}
		for _, l := range p.Logs() {
			if strings.Contains(l.Raw, "DATA RACE") || strings.HasPrefix(l.Raw, "panic: ") {
				t.Errorf("the plugin process reported: %s", l.Raw)
			}
		}
	})
	return p
}

// startConfigured launches the test binary and configures it on the memory
// backend in a fresh directory.
func startConfigured(t *testing.T, opts pluginhost.Options) (*pluginhost.Plugin, string) {
	t.Helper()
	p := start(t, opts)
	dir := t.TempDir()
	if err := p.Configure(ctx(t), trustDomain, memoryConfig(dir, "")); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p, dir
}

// ctx returns a context with SPIRE's 30 s deadline for one call.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
