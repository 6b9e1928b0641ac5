package e2e

import (
	"context"
	"crypto"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
	initv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/private/init/v1"
)

func TestInitListsServices(t *testing.T) {
	p := start(t, pluginhost.Options{})
	want := []string{"spire.plugin.server.keymanager.v1.KeyManager", "spire.service.common.config.v1.Config"}
	got := p.PluginServiceNames()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Init plugin_service_names = %v, want %v", got, want)
	}
}

func TestNotConfigured(t *testing.T) {
	p := start(t, pluginhost.Options{})
	d := sha256.Sum256([]byte("x"))
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"GenerateKey", func(ctx context.Context) error {
			_, err := p.GenerateKey(ctx, "x509-CA-A", engine.ECP256)
			return err
		}},
		{"GetPublicKey", func(ctx context.Context) error {
			_, err := p.GetPublicKey(ctx, "x509-CA-A")
			return err
		}},
		{"GetPublicKeys", func(ctx context.Context) error {
			_, err := p.GetPublicKeys(ctx)
			return err
		}},
		{"SignData", func(ctx context.Context) error {
			_, _, err := p.SignData(ctx, "x509-CA-A", d[:], crypto.SHA256)
			return err
		}},
	}
	// Before any Configure, and after a Configure that failed.
	for _, phase := range []string{"before Configure", "after a failed Configure"} {
		if phase == "after a failed Configure" {
			if err := p.Configure(ctx(t), trustDomain, "bogus = 1"); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Configure(bogus) = %v, want InvalidArgument", err)
			}
		}
		for _, tt := range tests {
			t.Run(phase+"/"+tt.name, func(t *testing.T) {
				err := tt.call(ctx(t))
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "not configured") {
					t.Errorf("%s = %v, want FailedPrecondition \"not configured\"", tt.name, err)
				}
			})
		}
	}
}

func TestConfigureErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage-id")
	if err := os.WriteFile(garbage, []byte("not a uuid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vault := filepath.Join(dir, "vault.json")
	tests := []struct {
		name        string
		path        string // binary; default the test build
		trustDomain string
		hcl         string
		wantCode    codes.Code
		wantIn      []string
	}{
		{
			name: "unknown key lists the valid ones", trustDomain: trustDomain,
			hcl:      memoryConfig(dir, "bogus_key = 1"),
			wantCode: codes.InvalidArgument, wantIn: []string{"bogus_key", "key_identifier_file", "memory_backend", "max_key_creations_per_hour"},
		},
		{
			name: "no backend selected", trustDomain: trustDomain,
			hcl:      `key_identifier_value = "server-a"`,
			wantCode: codes.InvalidArgument, wantIn: []string{"memory_backend"},
		},
		{
			name: "empty trust domain", trustDomain: "",
			hcl:      memoryConfig(dir, ""),
			wantCode: codes.InvalidArgument, wantIn: []string{"trust domain"},
		},
		{
			name: "not HCL", trustDomain: trustDomain,
			hcl:      "memory_backend = {",
			wantCode: codes.InvalidArgument, wantIn: []string{"HCL"},
		},
		{
			name: "identifier file holds no UUID", trustDomain: trustDomain,
			hcl:      "memory_backend = \"" + vault + "\"\nkey_identifier_file = \"" + garbage + "\"",
			wantCode: codes.InvalidArgument, wantIn: []string{garbage},
		},
		{
			name: "release build has no memory backend", path: bin.release, trustDomain: trustDomain,
			hcl:      memoryConfig(dir, ""),
			wantCode: codes.InvalidArgument, wantIn: []string{"backend"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, pluginhost.Options{Path: tt.path})
			err := p.Configure(ctx(t), tt.trustDomain, tt.hcl)
			if status.Code(err) != tt.wantCode {
				t.Fatalf("Configure = %v, want %v", err, tt.wantCode)
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Configure error %q does not mention %q", err, s)
				}
			}
		})
	}
	if b, _ := os.ReadFile(garbage); string(b) != "not a uuid\n" {
		t.Errorf("the malformed key_identifier_file was changed to %q", b)
	}
}

func TestConfigureCreatesIdentifierFile(t *testing.T) {
	p := start(t, pluginhost.Options{})
	dir := t.TempDir()
	idFile := filepath.Join(dir, "server-id")
	hcl := "memory_backend = \"" + filepath.Join(dir, "vault.json") + "\"\nkey_identifier_file = \"" + idFile + "\""
	if err := p.Configure(ctx(t), trustDomain, hcl); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	fi, err := os.Stat(idFile)
	if err != nil {
		t.Fatalf("key_identifier_file was not created: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key_identifier_file mode = %v, want 0600", fi.Mode().Perm())
	}
	// A re-Configure with the same file keeps the same server ID.
	if err := p.Configure(ctx(t), trustDomain, hcl); err != nil {
		t.Errorf("re-Configure with the same identifier file: %v", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault.json")
	missing := filepath.Join(dir, "missing-id")
	garbage := filepath.Join(dir, "garbage-id")
	if err := os.WriteFile(garbage, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		path        string
		trustDomain string
		hcl         string
		wantValid   bool
		wantNote    string // a substring of some note; "" means no notes
	}{
		{name: "valid", trustDomain: trustDomain, hcl: memoryConfig(dir, ""), wantValid: true},
		{name: "unknown key", trustDomain: trustDomain, hcl: memoryConfig(dir, "bogus_key = 1"), wantNote: "bogus_key"},
		{name: "no backend", trustDomain: trustDomain, hcl: `key_identifier_value = "a"`, wantNote: "memory_backend"},
		{name: "no server identity", trustDomain: trustDomain, hcl: `memory_backend = "` + vault + `"`, wantNote: "key_identifier"},
		{name: "bad max_key_creations_per_hour", trustDomain: trustDomain, hcl: memoryConfig(dir, "max_key_creations_per_hour = 100000"), wantNote: "max_key_creations_per_hour"},
		{name: "empty trust domain", hcl: memoryConfig(dir, ""), wantNote: "trust domain"},
		{name: "not HCL", trustDomain: trustDomain, hcl: "= =", wantNote: "HCL"},
		{name: "identifier file missing is not created", trustDomain: trustDomain,
			hcl:       `memory_backend = "` + vault + `"` + "\nkey_identifier_file = \"" + missing + "\"",
			wantValid: true, wantNote: "does not exist"},
		{name: "identifier file holds no UUID", trustDomain: trustDomain,
			hcl:      `memory_backend = "` + vault + `"` + "\nkey_identifier_file = \"" + garbage + "\"",
			wantNote: garbage},
		{name: "deprecated key_metadata_file warns", trustDomain: trustDomain,
			hcl:       `memory_backend = "` + vault + `"` + "\nkey_metadata_file = \"" + missing + "\"",
			wantValid: true, wantNote: "deprecated"},
		{name: "release build has no memory backend", path: bin.release, trustDomain: trustDomain, hcl: memoryConfig(dir, ""), wantNote: "backend"},
	}
	p := start(t, pluginhost.Options{})
	release := start(t, pluginhost.Options{Path: bin.release})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pl := p
			if tt.path == bin.release {
				pl = release
			}
			valid, notes, err := pl.Validate(ctx(t), tt.trustDomain, tt.hcl)
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if valid != tt.wantValid {
				t.Errorf("Validate valid = %v, want %v (notes %q)", valid, tt.wantValid, notes)
			}
			if tt.wantNote == "" {
				if len(notes) != 0 {
					t.Errorf("Validate notes = %q, want none", notes)
				}
				return
			}
			if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, tt.wantNote) }) {
				t.Errorf("Validate notes %q do not mention %q", notes, tt.wantNote)
			}
		})
	}
	// Validate never writes and never configures.
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("Validate created %s (err %v)", missing, err)
	}
	if _, err := os.Stat(vault); !os.IsNotExist(err) {
		t.Errorf("Validate opened the backend and created %s (err %v)", vault, err)
	}
	if b, _ := os.ReadFile(garbage); string(b) != "garbage" {
		t.Errorf("Validate changed %s to %q", garbage, b)
	}
	if _, err := p.GetPublicKeys(ctx(t)); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("GetPublicKeys after Validate only = %v, want FailedPrecondition", err)
	}
}

func TestReconfigure(t *testing.T) {
	p, dir := startConfigured(t, pluginhost.Options{})
	pk, err := p.GenerateKey(ctx(t), "x509-CA-A", engine.ECP256)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	stillServing := func(t *testing.T) {
		t.Helper()
		got, err := p.GetPublicKey(ctx(t), "x509-CA-A")
		if err != nil || got.Fingerprint != pk.Fingerprint {
			t.Fatalf("after re-Configure GetPublicKey = %v, %v; want fingerprint %s", got.Fingerprint, err, pk.Fingerprint)
		}
		d := sha256.Sum256([]byte("still serving"))
		if _, fp, err := p.SignData(ctx(t), "x509-CA-A", d[:], crypto.SHA256); err != nil || fp != pk.Fingerprint {
			t.Fatalf("after re-Configure SignData = %s, %v; want fingerprint %s", fp, err, pk.Fingerprint)
		}
	}

	refused := []struct {
		name        string
		trustDomain string
		hcl         string
		wantCode    codes.Code
		wantIn      string
	}{
		{"other backend location", trustDomain, "memory_backend = \"" + filepath.Join(dir, "other.json") + "\"\nkey_identifier_value = \"server-a\"", codes.FailedPrecondition, "memory_backend"},
		{"other server ID", trustDomain, "memory_backend = \"" + filepath.Join(dir, "vault.json") + "\"\nkey_identifier_value = \"server-b\"", codes.FailedPrecondition, "server ID"},
		{"other trust domain", "other.org", memoryConfig(dir, ""), codes.FailedPrecondition, "trust domain"},
		{"identifier file that does not exist", trustDomain, "memory_backend = \"" + filepath.Join(dir, "vault.json") + "\"\nkey_identifier_file = \"" + filepath.Join(dir, "new-id") + "\"", codes.FailedPrecondition, "server ID"},
		{"invalid configuration", trustDomain, memoryConfig(dir, "bogus_key = 1"), codes.InvalidArgument, "bogus_key"},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			err := p.Configure(ctx(t), tt.trustDomain, tt.hcl)
			if status.Code(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("re-Configure = %v, want %v naming %q", err, tt.wantCode, tt.wantIn)
			}
			stillServing(t)
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "new-id")); !os.IsNotExist(err) {
		t.Errorf("a refused re-Configure created the identifier file (err %v)", err)
	}

	t.Run("applied live", func(t *testing.T) {
		// One creation of x509-CA-A this hour already: a limit of 1 refuses
		// the next, which shows the new limit is live.
		if err := p.Configure(ctx(t), trustDomain, memoryConfig(dir, "max_key_creations_per_hour = 1")); err != nil {
			t.Fatalf("re-Configure: %v", err)
		}
		stillServing(t)
		_, err := p.GenerateKey(ctx(t), "x509-CA-A", engine.ECP256)
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("GenerateKey past the new limit = %v, want ResourceExhausted", err)
		}
		stillServing(t)
	})
}

func TestDeinit(t *testing.T) {
	p := start(t, pluginhost.Options{})
	dir := t.TempDir()
	// Passes every second, so that Deinit has background work to stop.
	if err := p.Configure(ctx(t), trustDomain, memoryConfig(dir, `liveness_interval = "1s"`+"\n"+`cleanup_interval = "1s"`)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if _, err := p.GenerateKey(ctx(t), "JWT-Signer-A", engine.ECP256); err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	store, err := memory.OpenStore(filepath.Join(dir, "vault.json"))
	if err != nil {
		t.Fatal(err)
	}
	// A fault that does nothing but count the cleanup passes' listings.
	if err := store.InjectFault(memory.Fault{Op: "List"}); err != nil {
		t.Fatal(err)
	}
	listings := func() int {
		fs := store.Faults()
		if len(fs) != 1 {
			t.Fatalf("faults = %v", fs)
		}
		return fs[0].Hits
	}
	deadline := time.Now().Add(10 * time.Second)
	for listings() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if listings() == 0 {
		t.Fatal("no cleanup pass ran in 10 s with cleanup_interval = 1s")
	}
	if err := p.Deinit(ctx(t)); err != nil {
		t.Fatalf("Deinit: %v", err)
	}
	after := listings()
	time.Sleep(2500 * time.Millisecond)
	if n := listings(); n != after {
		t.Errorf("%d cleanup passes ran after Deinit; its background work should have stopped", n-after)
	}
	if p.Exited() {
		t.Fatal("the plugin exited on Deinit; SPIRE unloads it itself")
	}
	if _, err := p.GetPublicKey(ctx(t), "JWT-Signer-A"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("GetPublicKey after Deinit = %v, want FailedPrecondition", err)
	}
	// A second Deinit is harmless.
	if _, err := p.InitClient().Deinit(ctx(t), &initv1.DeinitRequest{}); err != nil {
		t.Errorf("second Deinit: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	p := start(t, pluginhost.Options{})
	dir := t.TempDir()
	// Stopped before dir is removed: its cleanup pass writes there every
	// second.
	defer p.Close()
	// A cleanup pass every second retires the superseded key once it has
	// settled.
	if err := p.Configure(ctx(t), trustDomain, memoryConfig(dir, `cleanup_interval = "1s"`)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	before := time.Now()
	pk, err := p.GenerateKey(ctx(t), "x509-CA-A", engine.ECP384)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	dig := sha384(t, "m")
	if _, _, err := p.SignData(ctx(t), pk.ID, dig, crypto.SHA384); err != nil {
		t.Fatalf("SignData: %v", err)
	}
	if _, _, err := p.SignData(ctx(t), "missing", dig, crypto.SHA384); status.Code(err) != codes.NotFound {
		t.Fatalf("SignData(missing) = %v, want NotFound", err)
	}
	// A rotation supersedes the first key; it is retired once it has
	// settled (engine.DefaultSettle on the cloud's clock), not before.
	store, err := memory.OpenStore(filepath.Join(dir, "vault.json"))
	if err != nil {
		t.Fatal(err)
	}
	// A fault that does nothing but count the cleanup passes' listings.
	if err := store.InjectFault(memory.Fault{Op: "List"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GenerateKey(ctx(t), "x509-CA-A", engine.ECP384); err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	listed := func() int {
		n := 0
		for _, f := range store.Faults() {
			n += f.Hits
		}
		return n
	}
	// Two listings after the rotation: the first pass after it is over.
	from := listed()
	for deadline := time.Now().Add(10 * time.Second); listed() < from+2; {
		if time.Now().After(deadline) {
			t.Fatal("no two cleanup passes ran in 10 s with cleanup_interval = 1s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range p.Metrics() {
		if m.Name() == "kmskeeper.keys.retired" {
			t.Fatalf("a key was retired before the superseded one settled: %v", m)
		}
	}
	if refs := store.Refs(); len(refs) != 2 {
		t.Fatalf("the store holds %v right after the rotation, want both generations", refs)
	}
	if err := store.Advance(engine.DefaultSettle + time.Minute); err != nil {
		t.Fatal(err)
	}

	// Measurements arrive aggregated, every plugin.DefaultMetricsInterval.
	wctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tests := []struct {
		call, name, label, value string
	}{
		{"IncrCounter", "kmskeeper.keys.created", "key_type", "EC_P384"},
		{"IncrCounter", "kmskeeper.keys.create_latency.count", "key_type", "EC_P384"},
		{"SetGauge", "kmskeeper.keys.create_latency.p50", "key_type", "EC_P384"},
		{"IncrCounter", "kmskeeper.sign.latency.count", "key_type", "EC_P384"},
		{"SetGauge", "kmskeeper.sign.latency.p50", "key_type", "EC_P384"},
		{"SetGauge", "kmskeeper.sign.latency.p99", "key_type", "EC_P384"},
		{"SetGauge", "kmskeeper.sign.latency.max", "key_type", "EC_P384"},
		{"IncrCounter", "kmskeeper.sign.errors", "code", "NotFound"},
		{"IncrCounter", "kmskeeper.keys.retired", "reason", "superseded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.WaitMetric(wctx, func(m pluginhost.Metric) bool {
				return m.Call == tt.call && m.Name() == tt.name && m.Label(tt.label) == tt.value
			})
			if err != nil {
				t.Fatalf("no %s %s{%s=%s} reached the host: %v; got %v", tt.call, tt.name, tt.label, tt.value, err, p.Metrics())
			}
			// Counters count; gauges are milliseconds of a call that
			// took more than nothing and less than the test.
			if m.Value <= 0 || (tt.call == "SetGauge" && time.Duration(m.Value*float32(time.Millisecond)) > time.Since(before)) {
				t.Errorf("%s = %v", tt.name, m.Value)
			}
		})
	}
}

// TestMetricsAggregated checks that signatures cost SPIRE's Metrics
// service no call each: a hundred SignData reach it as one count (or a few,
// one per interval) with a latency summary, and what the plugin gathered
// since its last send arrives at Deinit.
func TestMetricsAggregated(t *testing.T) {
	p, _ := startConfigured(t, pluginhost.Options{})
	pk, err := p.GenerateKey(ctx(t), "x509-CA-A", engine.ECP256)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	d := sha256.Sum256([]byte("m"))
	const n = 100
	for range n {
		if _, _, err := p.SignData(ctx(t), pk.ID, d[:], crypto.SHA256); err != nil {
			t.Fatalf("SignData: %v", err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	var count float32
	calls := 0
	for _, m := range p.Metrics() {
		if m.Name() == "kmskeeper.sign.latency.count" && m.Label("key_type") == "EC_P256" {
			count += m.Value
			calls++
		}
	}
	if count != n {
		t.Errorf("kmskeeper.sign.latency.count adds up to %v, want %d: %v", count, n, p.Metrics())
	}
	if all := len(p.Metrics()); calls == 0 || all > 5*calls+10 {
		t.Errorf("%d signatures made %d Metrics calls (%d counts), want a few per interval: %v", n, all, calls, p.Metrics())
	}
}

func TestNoMetricsWhenNotOffered(t *testing.T) {
	p, _ := startConfigured(t, pluginhost.Options{WithoutMetrics: true})
	pk, err := p.GenerateKey(ctx(t), "x509-CA-A", engine.ECP256)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	d := sha256.Sum256([]byte("m"))
	if _, _, err := p.SignData(ctx(t), pk.ID, d[:], crypto.SHA256); err != nil {
		t.Fatalf("SignData: %v", err)
	}
	wctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if m, err := p.WaitMetric(wctx, func(pluginhost.Metric) bool { return true }); err == nil {
		t.Errorf("the plugin reported %v although Init did not offer the Metrics service", m)
	}
}

func TestLogsAreJSONOnStderr(t *testing.T) {
	p, _ := startConfigured(t, pluginhost.Options{})
	if _, err := p.GenerateKey(ctx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	wctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := p.WaitLog(wctx, func(l pluginhost.LogLine) bool { return l.Level == "info" && l.Message == "Configured" }); err != nil {
		t.Fatalf("no info line \"Configured\": %v", err)
	}
	for _, l := range p.Logs() {
		if !l.JSON || l.Level == "" || l.Message == "" {
			t.Errorf("stderr line is not an hclog JSON line: %q", l.Raw)
		}
	}
}

func TestKillAndRestart(t *testing.T) {
	dir := t.TempDir()
	p := start(t, pluginhost.Options{})
	if err := p.Configure(ctx(t), trustDomain, memoryConfig(dir, "")); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	pk, err := p.GenerateKey(ctx(t), "x509-CA-B", engine.ECP256)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !p.Exited() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !p.Exited() {
		t.Fatal("the plugin did not exit after SIGKILL")
	}
	if _, err := p.GetPublicKeys(ctx(t)); err == nil {
		t.Error("a killed plugin still answers")
	}

	q := start(t, pluginhost.Options{})
	if err := q.Configure(ctx(t), trustDomain, memoryConfig(dir, "")); err != nil {
		t.Fatalf("Configure after the crash: %v", err)
	}
	got, err := q.GetPublicKey(ctx(t), "x509-CA-B")
	if err != nil || got.Fingerprint != pk.Fingerprint {
		t.Fatalf("after the crash GetPublicKey = %s, %v; want %s", got.Fingerprint, err, pk.Fingerprint)
	}
	signer, err := q.Signer(ctx(t), "x509-CA-B")
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("after crash"))
	if _, err := signer.Sign(nil, d[:], crypto.SHA256); err != nil {
		t.Errorf("signing after the crash: %v", err)
	}
}

func TestChecksum(t *testing.T) {
	b, err := os.ReadFile(bin.test)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	start(t, pluginhost.Options{Checksum: sum[:]})

	sum[0] ^= 0xff
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if p, err := pluginhost.Start(c, pluginhost.Options{Path: bin.test, Checksum: sum[:]}); err == nil {
		p.Close()
		t.Error("Start with a wrong checksum succeeded")
	}
}

func TestRawProtocol(t *testing.T) {
	p, _ := startConfigured(t, pluginhost.Options{})
	km := p.KeyManagerClient()
	resp, err := km.GenerateKey(ctx(t), &keymanagerv1.GenerateKeyRequest{KeyId: "WIT-Signer-A", KeyType: keymanagerv1.KeyType_EC_P256})
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	if pk := resp.GetPublicKey(); pk.GetId() != "WIT-Signer-A" || pk.GetType() != keymanagerv1.KeyType_EC_P256 {
		t.Errorf("GenerateKey answered %v", pk)
	}
	d := sha256.Sum256([]byte("raw"))
	_, err = km.SignData(ctx(t), &keymanagerv1.SignDataRequest{
		KeyId:      "WIT-Signer-A",
		Data:       d[:],
		SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256},
	})
	if err != nil {
		t.Errorf("SignData: %v", err)
	}
}
