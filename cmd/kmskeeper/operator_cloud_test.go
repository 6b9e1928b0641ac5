package main

// The operator commands (validate, keys list, gc) against the two cloud
// emulators, through runCLI with a server.conf written to a temporary
// directory: the real SDKs, the real credentials handshakes. The scenarios
// are here, shared; operator_azure_test.go and operator_gcp_test.go
// implement operatorCloud for their emulator and run them.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/operator"
)

// TestMain makes the process trust the Key Vault emulator's CA before any
// test runs (see trustAzureEmulatorCA).
//
// Launched as a plugin, it serves the plugin protocol as the kmskeeper
// binary does: the demo launches os.Executable() as its plugin, which in
// the demo tests that call runDemo in process is this test binary.
func TestMain(m *testing.M) {
	if isPluginMode() {
		os.Exit(servePlugin())
	}
	dir, err := os.MkdirTemp("", "kmskeeper-cmd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if azureTemplate, err = trustAzureEmulatorCA(dir); err != nil {
		fmt.Fprintln(os.Stderr, "trusting the Key Vault emulator's CA:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// azureTemplate is the state file of a Key Vault emulator that holds only
// its CA and credentials. Every emulator a test starts loads a copy (the
// emulator keeps its CA in its data directory), so that all of them present
// certificates of the one CA this process trusts.
var azureTemplate string

// trustAzureEmulatorCA starts and stops an emulator with a data directory
// under dir and loads Go's system certificate pool with its CA through
// SSL_CERT_FILE. Go reads the pool once per process, so this must happen
// before anything makes a TLS connection; the variable is restored at once,
// so processes the tests start do not inherit it.
func trustAzureEmulatorCA(dir string) (string, error) {
	data := filepath.Join(dir, "azure-template")
	srv, err := keyvault.Start(context.Background(), keyvault.Options{DataDir: data})
	if err != nil {
		return "", err
	}
	ca := filepath.Join(dir, "azure-ca.pem")
	err = srv.WriteCAFile(ca)
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	old, had := os.LookupEnv("SSL_CERT_FILE")
	os.Setenv("SSL_CERT_FILE", ca)
	_, err = x509.SystemCertPool()
	if had {
		os.Setenv("SSL_CERT_FILE", old)
	} else {
		os.Unsetenv("SSL_CERT_FILE")
	}
	if err != nil {
		return "", err
	}
	state, err := filepath.Glob(filepath.Join(data, "*.json"))
	if err != nil || len(state) != 1 {
		return "", fmt.Errorf("the emulator's data directory holds %d state files, want 1 (%v)", len(state), err)
	}
	return state[0], nil
}

// The server the configurations describe.
const (
	opTrustDomain = "example.org"
	opServerID    = "server-a"
)

// opProbeChecks are the probe checks of the server.conf written by
// writeServerConf: one per key type (ca_key_type, jwt_key_type).
var opProbeChecks = []string{"probe EC_P256", "probe EC_P384"}

// identity is who a configuration authenticates as.
type identity int

const (
	fullAccess   identity = iota // every permission the plugin needs
	cannotList                   // all but listing keys
	cannotSign                   // can list and create keys, cannot sign with them
	cannotCreate                 // can list and sign, cannot create keys
)

func (id identity) String() string {
	return [...]string{"full access", "cannot list", "cannot sign", "cannot create"}[id]
}

// signFault is how an emulator fails a probe's signature after the probe
// key was created.
type signFault int

const (
	signRefused signFault = iota + 1 // every sign request is answered with an error
	signDamaged                      // every signature the client receives is wrong
)

// seededKey is one SPIRE key ID with its generations, put straight into a
// vault or key ring.
type seededKey struct {
	trustDomain, serverID, keyID string
	// created are the creation times of the generations, oldest first.
	created []time.Time
	// updated is the key's last sign of life (liveness).
	updated time.Time
}

// operatorCloud is a running emulator as the scenarios drive it.
type operatorCloud interface {
	// config writes a SPIRE server.conf (trust domain opTrustDomain,
	// server ID opServerID) whose KeyManager uses the emulator as id, and
	// returns its path.
	config(t *testing.T, id identity) string
	// denied is what validate must say when id lacks its permission: the
	// permission and what grants it.
	denied(id identity) []string
	// breakSign makes the emulator fail every signature as f says and
	// returns what the failed probe check must say.
	breakSign(t *testing.T, f signFault) string
	// breakList makes the emulator fail every listing with an error the
	// client retries, and returns what the error must say.
	breakList(t *testing.T) string
	// seed lays out the generations of k (bypassing the API, no auth) and
	// returns their references as keys list shows them, oldest first.
	seed(t *testing.T, k seededKey) []string
	// seedUnrelated lays out a key that is not SPIRE's (no tags or labels),
	// created long ago, and returns its reference.
	seedUnrelated(t *testing.T, created time.Time) string
	// state reads every key generation of the emulator without going
	// through the plugin: reference -> stateLive or stateRetired, plus
	// entries of the emulator's own (whole keys) with other values.
	state(t *testing.T) map[string]string
	// retired reports whether state shows the key generation ref retired:
	// deleted, destroyed or scheduled for destruction.
	retired(state map[string]string, ref string) bool
	// advance moves the emulator's clock, which dates its answers, forward
	// by d.
	advance(d time.Duration)
}

// Generation states in operatorCloud.state.
const (
	stateLive    = "live"
	stateRetired = "retired"
)

// opClouds is how many clouds (vaults, key rings) testOperatorCommands
// uses: one per scenario.
const opClouds = 12

// testOperatorCommands runs every scenario, each on a cloud of its own
// taken from clouds, which must hold opClouds.
func testOperatorCommands(t *testing.T, clouds []operatorCloud) {
	next := 0
	newCloud := func(t *testing.T) operatorCloud {
		t.Helper()
		if next == len(clouds) {
			t.Fatalf("all %d clouds are in use: raise opClouds", len(clouds))
		}
		next++
		return clouds[next-1]
	}
	t.Run("validate", func(t *testing.T) { testValidate(t, newCloud) })
	t.Run("keys list and gc", func(t *testing.T) { testKeysAndGC(t, newCloud(t)) })
	t.Run("unreachable", func(t *testing.T) { testUnreachableCloud(t, newCloud(t)) })
}

// countGenerations counts the live and retired generations of a state.
func countGenerations(state map[string]string) (live, retired int) {
	for _, s := range state {
		switch s {
		case stateLive:
			live++
		case stateRetired:
			retired++
		}
	}
	return live, retired
}

// writeServerConf writes a server.conf in a new directory, with the
// KeyManager block's plugin_data inline or, with asFile, in a
// plugin_data_file next to it (named by a relative path).
func writeServerConf(t *testing.T, plugin, pluginData string, asFile bool) string {
	t.Helper()
	dir := t.TempDir()
	data := "plugin_data {\n" + pluginData + "\n        }"
	if asFile {
		if err := os.WriteFile(filepath.Join(dir, "keymanager.hcl"), []byte(pluginData), 0o600); err != nil {
			t.Fatal(err)
		}
		data = `plugin_data_file = "keymanager.hcl"`
	}
	conf := fmt.Sprintf(`server {
    bind_address = "0.0.0.0"
    bind_port    = "8081"
    trust_domain = %q
    data_dir     = "/opt/spire/data/server"
    log_level    = "INFO"
    ca_key_type  = "ec-p256"
    jwt_key_type = "ec-p384"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type     = "sqlite3"
            connection_string = "/opt/spire/data/server/datastore.sqlite3"
        }
    }

    KeyManager %q {
        plugin_cmd      = "/opt/spire/bin/kmskeeper"
        plugin_checksum = "0000000000000000000000000000000000000000000000000000000000000000"
        %s
    }
}
`, opTrustDomain, plugin, data)
	path := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cliRun is the outcome of one command.
type cliRun struct {
	args           []string
	code           int
	stdout, stderr string
	err            error
}

// String shows everything the command printed, for failure messages.
func (r cliRun) String() string {
	return fmt.Sprintf("kmskeeper %s: exit %d (%v)\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.err, r.stdout, r.stderr)
}

// runKmskeeper runs the command line through runCLI as main does.
func runKmskeeper(t *testing.T, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := runCLI(ctx, args, &stdout, &stderr)
	r := cliRun{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
	if err != nil {
		r.code = exitCode(err)
	}
	return r
}

// validateReport is validate --json's output.
type validateReport struct {
	OK bool `json:"ok"`
	operator.Report
}

func decodeJSON[T any](t *testing.T, r cliRun) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("decoding the JSON output: %v\n%s", err, r)
	}
	return v
}

// testValidate runs validate, with and without --probe, on good
// configurations, identities that lack a permission and clouds that fail
// signatures, and checks the exit code, the failed checks, what they say,
// and that every probe key was retired.
func testValidate(t *testing.T, newCloud func(*testing.T) operatorCloud) {
	tests := []struct {
		name  string
		id    identity
		fault signFault
		probe bool
		// failed are the checks that must fail; none means exit 0.
		failed []string
		// retired is how many probe keys the cloud must hold, all retired.
		retired int
	}{
		{name: "good configuration", id: fullAccess},
		{name: "good configuration, probe", id: fullAccess, probe: true, retired: len(opProbeChecks)},
		{name: "no list permission", id: cannotList, failed: []string{"list keys"}},
		{name: "no list permission, probe", id: cannotList, probe: true, failed: []string{"list keys"}},
		{name: "no sign permission", id: cannotSign},
		{name: "no sign permission, probe", id: cannotSign, probe: true, failed: opProbeChecks, retired: len(opProbeChecks)},
		{name: "no create permission", id: cannotCreate},
		{name: "no create permission, probe", id: cannotCreate, probe: true, failed: opProbeChecks},
		{name: "sign refused, probe", id: fullAccess, fault: signRefused, probe: true, failed: opProbeChecks, retired: len(opProbeChecks)},
		{name: "signature damaged, probe", id: fullAccess, fault: signDamaged, probe: true, failed: opProbeChecks, retired: len(opProbeChecks)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCloud(t)
			conf := c.config(t, tt.id)
			want := c.denied(tt.id)
			if tt.fault != 0 {
				want = []string{c.breakSign(t, tt.fault)}
			}
			args := []string{"validate", "--config", conf, "--json"}
			if tt.probe {
				args = append(args, "--probe")
			}
			r := runKmskeeper(t, args...)
			if wantCode := min(len(tt.failed), 1); r.code != wantCode {
				t.Fatalf("exit code %d, want %d\n%s", r.code, wantCode, r)
			}
			rep := decodeJSON[validateReport](t, r)
			var failed, names []string
			for _, ch := range rep.Checks {
				names = append(names, ch.Name)
				if ch.OK {
					continue
				}
				failed = append(failed, ch.Name)
				for _, w := range want {
					if !strings.Contains(ch.Detail, w) {
						t.Errorf("check %q does not say %q: %s", ch.Name, w, ch.Detail)
					}
				}
				if ch.Fix == "" || strings.Contains(ch.Detail+ch.Fix, "left behind") {
					t.Errorf("check %q: fix %q, detail %q: want a fix, and no probe key left behind", ch.Name, ch.Fix, ch.Detail)
				}
				if tt.fault == 0 && !strings.Contains(ch.Fix, "grant the role or permission") {
					t.Errorf("check %q: the fix %q does not say to grant the permission", ch.Name, ch.Fix)
				}
			}
			if !slices.Equal(failed, tt.failed) || rep.OK != (len(tt.failed) == 0) {
				t.Errorf("failed checks %q (ok %v), want %q", failed, rep.OK, tt.failed)
			}
			if !slices.Contains(names, "list keys") {
				t.Errorf("checks %q: the cloud was not listed", names)
			}
			if probed := slices.ContainsFunc(names, func(n string) bool { return slices.Contains(opProbeChecks, n) }); probed != (tt.probe && tt.id != cannotList) {
				t.Errorf("checks %q: probed %v", names, probed)
			}

			// Nothing the probe created can still sign.
			st := c.state(t)
			if live, retired := countGenerations(st); live != 0 || retired != tt.retired {
				t.Errorf("the cloud holds %d live and %d retired key generations, want 0 and %d: %v", live, retired, tt.retired, st)
			}
			for _, ch := range rep.Checks {
				if ref, ok := probedRef(ch.Detail); ch.OK && slices.Contains(opProbeChecks, ch.Name) && (!ok || !c.retired(st, ref)) {
					t.Errorf("check %q: probe key %q is not retired: %v", ch.Name, ref, st)
				}
			}

			// keys list shows no probe key either.
			r = runKmskeeper(t, "keys", "list", "--json", "--config", conf)
			if r.code != 0 && tt.id != cannotList {
				t.Fatalf("%s", r)
			}
			if r.code == 0 {
				for _, row := range decodeJSON[[]operator.KeyRow](t, r) {
					t.Errorf("after validate, keys list shows %s (%s of %s, %s)", row.Ref, row.KeyID, row.ServerID, row.State)
				}
			}

			// The table says the same to a person.
			if tt.probe {
				return
			}
			r = runKmskeeper(t, slices.DeleteFunc(args, func(a string) bool { return a == "--json" })...)
			summary := "All checks passed."
			if len(tt.failed) > 0 {
				summary = "Some checks failed."
			}
			if !strings.Contains(r.stdout, summary) || (len(tt.failed) > 0) != strings.Contains(r.stdout, "FAIL") || (len(tt.failed) > 0) != strings.Contains(r.stdout, "fix: ") {
				t.Errorf("table output does not say %q with its failures and fixes:\n%s", summary, r)
			}
		})
	}
}

// probedRef returns the key a passing probe check names.
func probedRef(detail string) (string, bool) {
	rest, ok := strings.CutPrefix(detail, "created ")
	if !ok {
		return "", false
	}
	ref, _, ok := strings.Cut(rest, ", signed")
	return ref, ok
}

// testKeysAndGC seeds this server's keys (current, superseded, superseded
// but still settling, old but current), other servers' (stale, kept alive),
// another trust domain's and a key that is not SPIRE's, then checks keys
// list (JSON and table), gc's dry run (changes nothing), gc --apply (retires
// exactly what the dry run listed), a second gc --apply (nothing left to
// do), and a gc --apply once the cloud's clock has passed the settle period
// (the settled generation is retired, nothing else).
func testKeysAndGC(t *testing.T, c operatorCloud) {
	now := time.Now()
	day := 24 * time.Hour
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	seeds := []struct {
		key seededKey
		// states of the generations in keys list; nil: not listed.
		states []string
	}{
		{seededKey{opTrustDomain, opServerID, "x509-CA-A", []time.Time{ago(3 * day), ago(day)}, ago(day)}, []string{"superseded", "current"}},
		// Rotated 10 minutes ago: the superseded generation settles (a
		// server starting now may be adopting it) before it is retired.
		{seededKey{opTrustDomain, opServerID, "x509-CA-B", []time.Time{ago(2 * day), ago(10 * time.Minute)}, ago(10 * time.Minute)}, []string{"settling", "current"}},
		// This server's keys are never stale, however old.
		{seededKey{opTrustDomain, opServerID, "JWT-Signer-A", []time.Time{ago(20 * day)}, ago(20 * day)}, []string{"current"}},
		{seededKey{opTrustDomain, "server-b", "x509-CA-A", []time.Time{ago(40 * day)}, ago(15 * day)}, []string{"stale"}},
		// Kept alive two days ago: the liveness rule protects it.
		{seededKey{opTrustDomain, "server-c", "x509-CA-A", []time.Time{ago(40 * day)}, ago(2 * day)}, []string{"foreign"}},
		// Another trust domain's, with this server's ID, abandoned.
		{seededKey{"other.org", opServerID, "x509-CA-Z", []time.Time{ago(40 * day)}, ago(40 * day)}, nil},
	}
	cleanupOf := map[string]string{"current": "keep", "settling": "keep", "superseded": "retire", "foreign": "keep", "stale": "retire"}

	type wantRow struct {
		key            seededKey
		created        time.Time
		state, cleanup string
		thisServer     bool
	}
	want := map[string]*wantRow{}
	var untouched []string // refs nothing may retire
	for _, s := range seeds {
		refs := c.seed(t, s.key)
		if len(refs) != len(s.key.created) {
			t.Fatalf("seeding %+v gave %d references", s.key, len(refs))
		}
		for i, ref := range refs {
			if s.states == nil {
				untouched = append(untouched, ref)
				continue
			}
			w := &wantRow{key: s.key, created: s.key.created[i], state: s.states[i], cleanup: cleanupOf[s.states[i]], thisServer: s.key.serverID == opServerID}
			if w.cleanup == "keep" {
				untouched = append(untouched, ref)
			}
			want[ref] = w
		}
	}
	untouched = append(untouched, c.seedUnrelated(t, ago(40*day)))
	conf := c.config(t, fullAccess)

	// checkRows compares rows with want: every row expected, each once,
	// with cleanup taken from cleanupOf[state] unless overridden.
	checkRows := func(t *testing.T, what string, rows []operator.KeyRow, cleanup map[string]string) {
		t.Helper()
		seen := map[string]bool{}
		for i, r := range rows {
			w := want[r.Ref]
			switch {
			case w == nil:
				t.Errorf("%s lists %s (%s of %s), which is not one of this trust domain's keys", what, r.Ref, r.KeyID, r.ServerID)
				continue
			case seen[r.Ref]:
				t.Errorf("%s lists %s twice", what, r.Ref)
			}
			seen[r.Ref] = true
			wantCleanup := w.cleanup
			if c, ok := cleanup[wantCleanup]; ok {
				wantCleanup = c
			}
			if r.KeyID != w.key.keyID || r.ServerID != w.key.serverID || r.ThisServer != w.thisServer || r.State != w.state || r.Cleanup != wantCleanup || r.Error != "" {
				t.Errorf("%s: %s is %+v, want key %s of %s (this server %v), %s, cleanup %s", what, r.Ref, r, w.key.keyID, w.key.serverID, w.thisServer, w.state, wantCleanup)
			}
			if r.Created.Unix() != w.created.Unix() || r.Updated.Unix() != w.key.updated.Unix() {
				t.Errorf("%s: %s created %v updated %v, want %v and %v", what, r.Ref, r.Created, r.Updated, w.created, w.key.updated)
			}
			if i > 0 && r.ThisServer && !rows[i-1].ThisServer {
				t.Errorf("%s: this server's key %s is listed after another server's", what, r.Ref)
			}
		}
		for ref, w := range want {
			if !seen[ref] {
				t.Errorf("%s does not list %s (%s of %s, %s)", what, ref, w.key.keyID, w.key.serverID, w.state)
			}
		}
	}

	r := runKmskeeper(t, "keys", "list", "--config", conf, "--json")
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	checkRows(t, "keys list", decodeJSON[[]operator.KeyRow](t, r), nil)

	r = runKmskeeper(t, "keys", "list", "--config", conf)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	for ref, w := range want {
		line := lineWith(r.stdout, ref)
		server := w.key.serverID
		if w.thisServer {
			server += " (this server)"
		}
		if line == "" || !strings.Contains(line, " "+server+" ") || !strings.Contains(line, " "+w.state+" ") || !strings.Contains(line, " "+w.cleanup+" ") {
			t.Errorf("the table's line of %s is %q, want server %q, %s, %s\n%s", ref, line, server, w.state, w.cleanup, r.stdout)
		}
	}

	// Dry runs, however asked for, change nothing.
	before := c.state(t)
	var retire []string
	for ref, w := range want {
		if w.cleanup == "retire" {
			retire = append(retire, ref)
		}
	}
	for _, args := range [][]string{{"gc"}, {"gc", "--dry-run"}, {"gc", "--json"}} {
		r := runKmskeeper(t, append(args, "--config", conf)...)
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		if slices.Contains(args, "--json") {
			checkRows(t, "gc --json", decodeJSON[[]operator.KeyRow](t, r), nil)
		} else if s := fmt.Sprintf("Dry run: %d keys would be retired.", len(retire)); !strings.Contains(r.stdout, s) {
			t.Errorf("the dry run does not say %q:\n%s", s, r)
		}
		if after := c.state(t); !maps.Equal(after, before) {
			t.Fatalf("%s changed the cloud:\nbefore %v\nafter  %v", strings.Join(args, " "), before, after)
		}
	}

	// --apply retires exactly what the dry run marked.
	r = runKmskeeper(t, "gc", "--apply", "--json", "--config", conf)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	checkRows(t, "gc --apply", decodeJSON[[]operator.KeyRow](t, r), map[string]string{"retire": "retired"})
	after := c.state(t)
	for _, ref := range retire {
		if !c.retired(after, ref) {
			t.Errorf("gc --apply did not retire %s: %v", ref, after)
		}
	}
	for _, ref := range untouched {
		if c.retired(after, ref) {
			t.Errorf("gc --apply retired %s, which it must keep", ref)
		}
	}
	for k, v := range before {
		covered := slices.ContainsFunc(retire, func(ref string) bool { return k == ref || strings.HasPrefix(k, ref+"/") })
		if after[k] != v && !covered {
			t.Errorf("gc --apply changed %s (%s -> %s), which it was not to retire", k, v, after[k])
		}
	}

	// What is left is what cleanup keeps; a second pass has nothing to do.
	for _, ref := range retire {
		delete(want, ref)
	}
	r = runKmskeeper(t, "keys", "list", "--config", conf, "--json")
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	checkRows(t, "keys list after gc --apply", decodeJSON[[]operator.KeyRow](t, r), nil)
	r = runKmskeeper(t, "gc", "--apply", "--json", "--config", conf)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	checkRows(t, "a second gc --apply", decodeJSON[[]operator.KeyRow](t, r), nil)
	again := c.state(t)
	if !maps.Equal(again, after) {
		t.Errorf("a second gc --apply changed the cloud:\nbefore %v\nafter  %v", after, again)
	}

	// Once the settle period has passed on the cloud's clock, the settling
	// generation is superseded and retired; nothing else changes.
	c.advance(engine.DefaultSettle + time.Minute)
	var settled []string
	for ref, w := range want {
		if w.state == "settling" {
			w.state, w.cleanup = "superseded", "retire"
			settled = append(settled, ref)
		}
	}
	if len(settled) != 1 {
		t.Fatalf("%d settling generations seeded, want 1", len(settled))
	}
	r = runKmskeeper(t, "gc", "--apply", "--json", "--config", conf)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	checkRows(t, "gc --apply past the settle period", decodeJSON[[]operator.KeyRow](t, r), map[string]string{"retire": "retired"})
	last := c.state(t)
	if !c.retired(last, settled[0]) {
		t.Errorf("gc --apply past the settle period did not retire %s: %v", settled[0], last)
	}
	for k, v := range again {
		if last[k] != v && k != settled[0] {
			t.Errorf("gc --apply past the settle period changed %s (%s -> %s), which it was not to retire", k, v, last[k])
		}
	}
}

// lineWith returns the first line of s that contains sub followed by a
// space or the end of the line.
func lineWith(s, sub string) string {
	for l := range strings.Lines(s) {
		l = strings.TrimRight(l, "\n")
		if i := strings.Index(l, sub); i >= 0 && (i+len(sub) == len(l) || l[i+len(sub)] == ' ') {
			return l
		}
	}
	return ""
}

// testUnreachableCloud checks that each command gives up on a cloud whose
// listing keeps failing once the call's budget has run out, however often
// the SDK would retry, and says what to check.
func testUnreachableCloud(t *testing.T, c operatorCloud) {
	const budget = 1500 * time.Millisecond
	saved := callBudget
	callBudget = budget
	t.Cleanup(func() { callBudget = saved })
	conf := c.config(t, fullAccess)
	want := c.breakList(t)
	tests := []struct {
		args []string
		says []string
	}{
		{[]string{"validate", "--probe"}, []string{"FAIL  list keys", want, "fix: check that the vault or endpoint is reachable"}},
		{[]string{"keys", "list"}, []string{"listing keys", want}},
		{[]string{"gc", "--apply"}, []string{"listing keys", want}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			start := time.Now()
			r := runKmskeeper(t, append(tt.args, "--config", conf)...)
			if took := time.Since(start); took > budget+5*time.Second {
				t.Errorf("took %v with a budget of %v per call", took.Round(time.Millisecond), budget)
			}
			if r.code != 1 {
				t.Errorf("exit code %d, want 1", r.code)
			}
			out := r.stdout + fmt.Sprint(r.err)
			for _, s := range tt.says {
				if !strings.Contains(out, s) {
					t.Errorf("the output does not say %q\n%s", s, r)
				}
			}
		})
	}
}
