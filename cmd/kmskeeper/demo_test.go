package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// TestDemoEndToEnd builds the release binary and runs `kmskeeper demo` as a
// user would: it must exit 0 and print a passing line for every step.
func TestDemoEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin, err := pluginhost.Build(ctx, pluginhost.BuildOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "demo")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		errors.As(err, &ee)
		t.Fatalf("kmskeeper demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	steps := []string{
		"✓ Start the emulator",
		"✓ Launch the plugin as SPIRE does",
		"✓ Configure",
		"✓ GenerateKey x509-CA-A (EC P-256)",
		"✓ GenerateKey JWT-Signer-A (EC P-256)",
		"✓ Self-signed CA certificate signed through SignData",
		"✓ X509-SVID signed through SignData, verified with go-spiffe: spiffe://example.org/demo",
		"✓ JWT-SVID signed through SignData, verified with go-spiffe: spiffe://example.org/demo",
		"✓ Rotate x509-CA-A",
		"✓ New x509-CA-A signs",
		// Kept through cleanup passes while it settles, and said why.
		"✓ The superseded x509-CA-A key is kept while it settles: still enabled in the vault after",
		"since a server starting with the same ID may be adopting it, or restoring a lease that a concurrent write dropped",
		"✓ Move the emulator's clock",
		"✓ The superseded x509-CA-A key is deleted from the vault: by the plugin's next cleanup pass",
		"All steps passed.",
	}
	out := stdout.String()
	for _, s := range steps {
		if !strings.Contains(out, s) {
			t.Errorf("the demo's output has no line %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "✗") {
		t.Errorf("a step failed:\n%s", out)
	}
	// The table lists the two live keys with the built-in plugin's tags.
	rows := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(l), "spire-key-") && strings.Contains(l, "spire-server-td=example.org") && strings.Contains(l, "spire-server-id=") {
			rows++
		}
	}
	if rows != 2 {
		t.Errorf("the key table has %d rows of SPIRE keys, want 2:\n%s", rows, out)
	}
}

// TestDemoFlags checks the demo's usage errors.
func TestDemoFlags(t *testing.T) {
	var out bytes.Buffer
	for _, args := range [][]string{{"--backend", "aws"}, {"extra"}, {"--nope"}} {
		err := runDemo(t.Context(), args, &out, &out)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("demo %v: %v, want a usage error", args, err)
		}
	}
}
