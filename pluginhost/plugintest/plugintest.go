// Package plugintest launches the built kmskeeper binary for a Go test, the
// way SPIRE launches it, and ends it with the test. Every test package that
// drives the binary shares it, so that all of them fail the same way when
// the plugin process panics or races.
package plugintest

import (
	"context"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// StartTimeout bounds the launch and go-plugin handshake.
const StartTimeout = 30 * time.Second

// Start launches the plugin with opts. At the end of the test it closes
// the plugin and fails the test if the process reported a panic, a fatal
// error or a data race, or if any line it wrote holds a secret: one of
// secrets, or one SecretsFromEnv finds in opts.Env.
func Start(t testing.TB, opts pluginhost.Options, secrets ...string) *pluginhost.Plugin {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), StartTimeout)
	defer cancel()
	p, err := pluginhost.Start(ctx, opts)
	if err != nil {
		t.Fatalf("launching the plugin %s: %v", opts.Path, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Logf("closing the plugin: %v", err)
		}
		for _, l := range p.Crashes() {
			t.Errorf("the plugin process reported: %s", l)
		}
		var lines []string
		for _, l := range p.Logs() {
			lines = append(lines, l.Raw)
		}
		if leak := findSecret(lines, append(SecretsFromEnv(opts.Env), secrets...)); leak != "" {
			t.Error(leak)
		}
	})
	return p
}
