package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// TestDemoGCP runs `kmskeeper demo --backend gcp` from the release binary:
// it must exit 0 with every step passed (the rotated key's old version kept
// while it settles, then retired by the plugin once the emulator's clock
// has passed the settle period), and end with the key ring holding that
// version scheduled for destruction.
func TestDemoGCP(t *testing.T) {
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
	cmd := exec.CommandContext(ctx, bin, "demo", "--backend", "gcp")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kmskeeper demo --backend gcp: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, s := range []string{
		"✓ Configure: gcp_kms",
		"✓ X509-SVID signed through SignData, verified with go-spiffe",
		"✓ JWT-SVID signed through SignData, verified with go-spiffe",
		"✓ Rotate x509-CA-A",
		"✓ The superseded x509-CA-A key is kept while it settles: still enabled in the key ring after",
		"✓ Move the emulator's clock",
		"✓ The superseded x509-CA-A key is scheduled for destruction in the key ring: by the plugin's next cleanup pass",
		"All steps passed.",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("the demo's output has no line %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "✗") {
		t.Errorf("a step failed:\n%s", out)
	}
	var enabled, retiring int
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, "/cryptoKeyVersions/") || !strings.Contains(l, "spire-server-td=") {
			continue
		}
		switch {
		case strings.Contains(l, " enabled "):
			enabled++
		case strings.Contains(l, " retiring "):
			retiring++
		}
	}
	if enabled != 2 || retiring != 1 {
		t.Errorf("the table has %d enabled and %d retiring versions, want 2 and 1:\n%s", enabled, retiring, out)
	}
}
