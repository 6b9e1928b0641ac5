package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/internal/syncbuf"
	"github.com/kmskeeper/kmskeeper/pluginhost"
	"github.com/kmskeeper/kmskeeper/pluginhost/plugintest"
)

// TestDemoKeep runs `kmskeeper demo --keep` in process (the plugin it
// launches is this test binary, see TestMain) and checks what --keep
// promises: after every step passed, the emulator keeps running and the
// printed server.conf block works, a plugin launched from it with the
// printed environment serves the demo's keys; cancelling (Ctrl-C) stops
// the emulator, exits 0 and removes the demo's files.
func TestDemoKeep(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- runCLI(ctx, []string{"demo", "--keep"}, &out, &out) }()

	envLine := regexp.MustCompile(`(?m)^    set -a; \. (\S+); set \+a$`)
	var m []string
	deadline := time.Now().Add(60 * time.Second)
	for m == nil {
		select {
		case err := <-done:
			t.Fatalf("demo --keep returned before being stopped: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo --keep printed no server.conf block:\n%s", out.String())
		}
		m = envLine.FindStringSubmatch(out.String())
	}
	text := out.String()
	for _, s := range []string{"All steps passed.", "The emulator keeps running (Ctrl-C stops it)"} {
		if !strings.Contains(text, s) {
			t.Errorf("demo --keep output lacks %q:\n%s", s, text)
		}
	}
	field := func(name string) string {
		t.Helper()
		fm := regexp.MustCompile(`(?m)^\s*` + name + `\s*=\s*"([^"]*)"$`).FindStringSubmatch(text)
		if fm == nil {
			t.Fatalf("the server.conf block has no %s:\n%s", name, text)
		}
		return fm[1]
	}
	if got := field("plugin_cmd"); got != exe {
		t.Errorf("plugin_cmd = %q, want this binary %q", got, exe)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	if got := field("plugin_checksum"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("plugin_checksum = %q, want the binary's SHA-256 %x", got, sum)
	}
	vaultURI, idFile, envFile := field("key_vault_uri"), field("key_identifier_file"), m[1]
	rotated := regexp.MustCompile(`✓ Rotate x509-CA-A: fingerprint \S+ -> (\S+)…`).FindStringSubmatch(text)
	if rotated == nil {
		t.Fatalf("no rotation line:\n%s", text)
	}

	// A SPIRE server given the block and the environment file: the plugin
	// serves the demo's keys, the rotated x509-CA-A among them.
	envBytes, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatalf("the printed env file: %v", err)
	}
	var env []string
	for _, l := range strings.Split(string(envBytes), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			env = append(env, l)
		}
	}
	p := plugintest.Start(t, pluginhost.Options{Path: exe, Env: env})
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if err := p.Configure(cctx, demoTrustDomain, "key_vault_uri = \""+vaultURI+"\"\nkey_identifier_file = \""+idFile+"\"\n"); err != nil {
		t.Fatalf("Configure from the printed block: %v", err)
	}
	keys, err := p.GetPublicKeys(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != "JWT-Signer-A" || keys[1].ID != "x509-CA-A" || !strings.HasPrefix(keys[1].Fingerprint, rotated[1]) {
		t.Errorf("the plugin serves %+v; want the demo's JWT-Signer-A and x509-CA-A (fingerprint %s…)", keys, rotated[1])
	}
	if err := p.Close(); err != nil {
		t.Logf("closing the plugin: %v", err)
	}

	// Ctrl-C.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("demo --keep stopped with %v (exit %d), want exit 0", err, exitCode(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo --keep did not stop when cancelled")
	}
	u, err := url.Parse(vaultURI)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Errorf("the emulator still listens on %s after the demo stopped", u.Host)
	}
	if _, err := os.Stat(filepath.Dir(envFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's directory %s is left behind after it stopped (stat: %v)", filepath.Dir(envFile), err)
	}
}

// TestDemoFailingStep makes one step of the demo fail, through the
// demoTargets table the demo picks its cloud from, and checks that the demo
// says which step failed, runs no later step, exits 1 and removes its files,
// with and without --keep (which must not keep anything after a failure).
func TestDemoFailingStep(t *testing.T) {
	orig := demoTargets["azure"]
	t.Cleanup(func() { demoTargets["azure"] = orig })
	for _, tt := range []struct {
		name     string
		setUp    func(ctx context.Context, dir string) (*demoTarget, error)
		wantLine string
		notAfter string // a later step's line that must not appear
	}{
		{
			name: "the emulator does not start",
			setUp: func(context.Context, string) (*demoTarget, error) {
				return nil, errors.New("no port free")
			},
			wantLine: "✗ Start the emulator: no port free",
			notAfter: "Launch the plugin",
		},
		{
			name: "the plugin refuses the configuration",
			setUp: func(ctx context.Context, dir string) (*demoTarget, error) {
				target, err := orig(ctx, dir)
				if err == nil {
					target.pluginData += "key_vault_url = \"typo\"\n"
				}
				return target, err
			},
			wantLine: "✗ Configure: ",
			notAfter: "GenerateKey",
		},
	} {
		for _, args := range [][]string{{"demo"}, {"demo", "--keep"}} {
			t.Run(tt.name+"/"+strings.Join(args, " "), func(t *testing.T) {
				var dir string
				demoTargets["azure"] = func(ctx context.Context, d string) (*demoTarget, error) {
					dir = d
					return tt.setUp(ctx, d)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
				defer cancel()
				var out syncbuf.Buffer
				err := runCLI(ctx, args, &out, &out)
				text := out.String()
				if code := exitCode(err); code != 1 {
					t.Errorf("exit code %d (%v), want 1:\n%s", code, err, text)
				}
				if ctx.Err() != nil {
					t.Errorf("the demo ran until its context ended instead of stopping at the failure")
				}
				if !strings.Contains(text, tt.wantLine) {
					t.Errorf("output lacks %q:\n%s", tt.wantLine, text)
				}
				for _, s := range []string{tt.notAfter, "All steps passed.", "keeps running"} {
					if strings.Contains(text, s) {
						t.Errorf("output shows %q after the failed step:\n%s", s, text)
					}
				}
				if _, err := os.Stat(dir); dir == "" || !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the demo's directory %q is left behind (stat: %v)", dir, err)
				}
			})
		}
	}
}
