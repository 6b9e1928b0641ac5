package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/internal/syncbuf"
)

// TestEmulatorGCPHelpDocumentsEveryFlag walks the flag set the command
// parses with, so a flag added later is checked too: each one must appear in
// --help with its usage text and default, and --help must show no flag the
// command does not have.
func TestEmulatorGCPHelpDocumentsEveryFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	err := runEmulatorGCP(context.Background(), []string{"--help"}, &out, &errOut)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	checkHelpDocumentsFlags(t, out.String(), newEmulatorGCPFlagSet(&gcpEmulatorConfig{}, &gcpFlagValues{}), 17)
}

// checkHelpDocumentsFlags checks a command's --help output against the flag
// set it parses with: each flag must appear with its usage text and default,
// and help must show no flag that fs does not have. minFlags guards against
// walking a set that lost its flags.
func checkHelpDocumentsFlags(t *testing.T, help string, fs *flag.FlagSet, minFlags int) {
	t.Helper()
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		known[f.Name] = true
		arg, usage := flag.UnquoteUsage(f)
		if len(strings.Fields(usage)) < 3 {
			t.Errorf("-%s has no real usage text: %q", f.Name, usage)
		}
		head := "  -" + f.Name
		if arg != "" {
			head += " " + arg
		}
		i := strings.Index(help, head+"\n")
		if i < 0 {
			t.Errorf("--help does not list -%s (as %q)", f.Name, head)
			return
		}
		entry := help[i+len(head):]
		if j := strings.Index(entry, "\n  -"); j >= 0 {
			entry = entry[:j]
		}
		if !strings.Contains(entry, strings.ReplaceAll(usage, "\n", "\n    \t")) {
			t.Errorf("--help entry of -%s lacks its usage %q:\n%s", f.Name, usage, entry)
		}
		switch f.DefValue {
		case "", "false", "0", "0s", "[]":
		default:
			if !strings.Contains(entry, "(default ") || !strings.Contains(entry, f.DefValue) {
				t.Errorf("--help entry of -%s does not show its default %q:\n%s", f.Name, f.DefValue, entry)
			}
		}
	})
	if len(known) < minFlags {
		t.Errorf("only %d flags walked, want at least %d", len(known), minFlags)
	}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9-]*)(?: \S+)?$`).FindAllStringSubmatch(help, -1) {
		if !known[m[1]] {
			t.Errorf("--help shows -%s, which the flag set does not have", m[1])
		}
	}
}

func TestEmulatorGCPFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--ca-file", "x.pem"},
		{"--service-account", "not-an-email"},
		{"extra"},
		{"--pending-generation", "soon"},
		{"--quota-model", "hourly"},
	} {
		if _, err := parseEmulatorGCPFlags(args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	cfg, err := parseEmulatorGCPFlags([]string{"--service-account", "a@p.iam.gserviceaccount.com=roles/cloudkms.signer,cloudkms.cryptoKeys.list", "--service-account", "b@p.iam.gserviceaccount.com"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.opts.Principals["a@p.iam.gserviceaccount.com"]; len(got) != 2 || got[0] != "roles/cloudkms.signer" {
		t.Errorf("principal a = %q", got)
	}
	if got := cfg.opts.Principals["b@p.iam.gserviceaccount.com"]; len(got) != 1 || got[0] != "*" {
		t.Errorf("principal b = %q", got)
	}
	if cfg.opts.KeyRings[0] != defaultGCPKeyRing {
		t.Errorf("default key ring = %q", cfg.opts.KeyRings)
	}
}

func TestEmulatorGCPRunsUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runEmulatorGCP(ctx, []string{"--listen", "127.0.0.1:0", "--tls", "--ca-file", filepath.Join(dir, "ca.pem"),
			"--env-file", filepath.Join(dir, "gcp.env"), "--admin-listen", "127.0.0.1:0",
			"--key-ring", "projects/p/locations/l/keyRings/r"}, &out, &bytes.Buffer{})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	text := out.String()
	for _, want := range []string{"Cloud KMS emulator listening on 127.0.0.1:", `key_ring             = "projects/p/locations/l/keyRings/r"`, "endpoint             = \"https://127.0.0.1:", "SSL_CERT_FILE", "KMSKEEPER_GCPKMS_ADMIN_URL="} {
		if !strings.Contains(text, want) {
			t.Errorf("banner lacks %q:\n%s", want, text)
		}
	}
	env, err := os.ReadFile(filepath.Join(dir, "gcp.env"))
	if err != nil || !regexp.MustCompile(`(?m)^SSL_CERT_FILE=.*ca\.pem$`).Match(env) {
		t.Errorf("env file (%v):\n%s", err, env)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("emulator did not stop after cancel")
	}
}
