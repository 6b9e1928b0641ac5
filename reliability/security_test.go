package reliability

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n?$`)

// TestIdentifierFile starts several plugins at once on a key_identifier_file
// that does not exist yet: exactly one ID is written, mode 0600, complete (a
// UUID and a newline), with no temporary file left beside it, and every
// process uses it.
func TestIdentifierFile(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		dir := filepath.Join(t.TempDir(), "data")
		path := filepath.Join(dir, "server_id")
		data := strings.Replace(h.v.pluginData("unused", ""), `key_identifier_value = "unused"`, fmt.Sprintf("key_identifier_file = %q", path), 1)

		const n = 4
		var wg sync.WaitGroup
		ps := make([]*pluginHandle, n)
		for i := range n {
			ps[i] = &pluginHandle{p: h.launch()}
		}
		for _, ph := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ph.err = h.record(ph.p.Configure(callCtx(t), trustDomain, data))
			}()
		}
		wg.Wait()
		ids := map[string]bool{}
		for i, ph := range ps {
			if ph.err != nil {
				t.Fatalf("Configure %d: %v", i, ph.err)
			}
			for _, l := range ph.p.Logs() {
				if l.Message == "Configured" {
					id, _ := l.Fields["server_id"].(string)
					ids[id] = true
				}
			}
		}
		content, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !uuidRE.Match(content) {
			t.Errorf("key_identifier_file holds %q, want a UUID", content)
		}
		if len(ids) != 1 || !ids[strings.TrimSpace(string(content))] {
			t.Errorf("the processes configured with server IDs %v, want only the file's %s", ids, strings.TrimSpace(string(content)))
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("key_identifier_file mode = %v, want 0600", mode)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("the identifier file's directory holds %v, want only server_id (no temporary files)", names)
		}
	})
}

// pluginHandle is a plugin and the answer to its Configure.
type pluginHandle struct {
	p   *pluginhost.Plugin
	err error
}

// TestSecretsNeverLogged drives the plugin through failures of every kind
// (bad configurations, unknown keys, bad requests, cloud faults, a crash) at
// the most verbose log level; the harness then scans every log line and
// error message for the setup's credentials, tokens and private key material.
// Every other test of the suite goes through the same scan.
func TestSecretsNeverLogged(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		p := h.launch()
		for _, bad := range []string{"bogus = 1", h.v.pluginData("s", "max_key_creations_per_hour = \"lots\""), h.v.pluginData("s", "cleanup_interval = \"0s\"")} {
			if err := h.record(p.Configure(callCtx(t), trustDomain, bad)); status.Code(err) != codes.InvalidArgument {
				t.Errorf("Configure(%q) = %v, want InvalidArgument", bad, err)
			}
		}
		if err := h.configure(p, "server-s", ""); err != nil {
			t.Fatal(err)
		}
		pk := h.mustGenerate(p, "x509-CA-A")
		d := make([]byte, 17)
		for _, call := range []func() error{
			func() error { _, _, err := p.SignData(callCtx(t), "x509-CA-A", d, crypto.SHA256); return err },
			func() error { _, _, err := p.SignData(callCtx(t), "nope", d[:16], crypto.SHA256); return err },
			func() error { _, err := p.GetPublicKey(callCtx(t), "nope"); return err },
		} {
			if err := h.record(call()); err == nil {
				t.Error("a bad request succeeded")
			}
		}
		for _, kind := range faultKinds {
			h.v.inject(t, opSign, kind, 1)
			h.v.inject(t, opCreate, kind, 1)
			h.sign(callCtx(t), p, pk)
			h.generate(p, "JWT-Signer-A")
		}
		h.v.clear(t)
		kill(t, p)
		q := h.start("server-s", "")
		h.mustSignAll(q)
	})
}

// TestFindSecret checks the scan itself: it must catch a secret anywhere in
// a line.
func TestFindSecret(t *testing.T) {
	tests := []struct {
		texts, secrets []string
		leak           bool
	}{
		{[]string{`{"@message":"ok"}`}, []string{"s3cr3t-value"}, false},
		{[]string{`{"@message":"token s3cr3t-value here"}`}, []string{"s3cr3t-value"}, true},
		{[]string{"rpc error: code = Internal desc = s3cr3t-value"}, []string{"other-secret", "s3cr3t-value"}, true},
		{[]string{"short"}, []string{"short"}, false}, // too short to judge
	}
	for _, tt := range tests {
		if got := findSecret(tt.texts, tt.secrets) != ""; got != tt.leak {
			t.Errorf("findSecret(%q, %q) leak = %v, want %v", tt.texts, tt.secrets, got, tt.leak)
		}
	}
}
