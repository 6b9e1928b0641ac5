package azurekv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/pluginhost"
	"github.com/kmskeeper/kmskeeper/pluginhost/plugintest"
)

// binaryDir is where pluginBinary builds: one directory per test process,
// removed by TestMain.
func binaryDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("kmskeeper-azurekv-%d", os.Getpid()))
}

// pluginBinary builds the release kmskeeper binary once for the package's
// end-to-end tests (which launch it as SPIRE does) and returns its path. A
// run of only the fast tests builds nothing.
var pluginBinary = sync.OnceValues(func() (string, error) {
	if err := os.MkdirAll(binaryDir(), 0o700); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return pluginhost.Build(ctx, pluginhost.BuildOptions{Dir: binaryDir()})
})

func TestMain(m *testing.M) {
	code := m.Run()
	os.RemoveAll(binaryDir())
	os.Exit(code)
}

// pluginEnv returns the emulator's client environment (CA file, authority,
// app and managed identity credentials), keeping only the variables whose
// names start with one of keep; SSL_CERT_FILE is always kept.
func pluginEnv(t *testing.T, srv *keyvault.Server, keep ...string) []string {
	t.Helper()
	if err := srv.WriteCAFile(filepath.Join(t.TempDir(), "ca.pem")); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range srv.Env() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "SSL_CERT_FILE" {
			out = append(out, kv)
			continue
		}
		for _, k := range keep {
			if strings.HasPrefix(name, k) {
				out = append(out, kv)
				break
			}
		}
	}
	return out
}

// allEnv keeps every variable of the emulator's environment.
var allEnv = []string{""}

// launch starts the built binary with env and closes it after the test,
// failing the test if the plugin panicked or logged one of secrets or a
// secret of env.
func launch(t *testing.T, env []string, secrets ...string) *pluginhost.Plugin {
	t.Helper()
	path, err := pluginBinary()
	if err != nil {
		t.Fatalf("building kmskeeper: %v", err)
	}
	return plugintest.Start(t, pluginhost.Options{Path: path, Env: env}, secrets...)
}

// appSecret finds the app_secret of plugin_data, for the secrets scan.
var appSecret = regexp.MustCompile(`app_secret\s*=\s*"([^"]+)"`)

// configured launches the binary and configures it with plugin_data built
// from the vault URI, the server ID and extra lines.
func configured(t *testing.T, env []string, vaultURL, serverID, extra string) *pluginhost.Plugin {
	t.Helper()
	var secrets []string
	if m := appSecret.FindStringSubmatch(extra); m != nil {
		secrets = append(secrets, m[1])
	}
	p := launch(t, env, secrets...)
	if err := p.Configure(spireCtx(t), testTD, pluginData(vaultURL, serverID, extra)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return p
}

func pluginData(vaultURL, serverID, extra string) string {
	return fmt.Sprintf("key_vault_uri = %q\nkey_identifier_value = %q\n%s", vaultURL, serverID, extra)
}

// spireCtx has SPIRE's 30 s deadline for one plugin call.
func spireCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
