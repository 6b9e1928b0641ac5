package gcpkms

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/pluginhost"
	"github.com/kmskeeper/kmskeeper/pluginhost/plugintest"
)

// pluginDir holds the built binary; TestMain sets it before any test runs.
var pluginDir string

// pluginBinary builds the release kmskeeper binary once, on first use, for
// the package's tests that launch it as SPIRE does, and returns its path.
var pluginBinary = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return pluginhost.Build(ctx, pluginhost.BuildOptions{Dir: pluginDir})
})

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kmskeeper-gcpkms-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// launch starts the built binary and closes it after the test, failing the
// test if the plugin panicked or raced. The environment is empty of Google
// credentials: the plaintext loopback emulator needs none.
func launch(t *testing.T, env ...string) *pluginhost.Plugin {
	t.Helper()
	path, err := pluginBinary()
	if err != nil {
		t.Fatalf("building kmskeeper: %v", err)
	}
	return plugintest.Start(t, pluginhost.Options{Path: path, Env: env})
}

// pluginData is the plugin_data of a server on the emulator.
func pluginData(srv *cloudkms.Server, serverID, extra string) string {
	return fmt.Sprintf("key_ring = %q\nendpoint = %q\nkey_identifier_value = %q\n%s", testRing, srv.Addr(), serverID, extra)
}

// configured launches the binary and configures it on the emulator.
func configured(t *testing.T, srv *cloudkms.Server, serverID, extra string) *pluginhost.Plugin {
	t.Helper()
	p := launch(t)
	if err := p.Configure(callCtx(t), testTrustDomain, pluginData(srv, serverID, extra)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p
}
