package operator_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/operator"
)

// testKind serves one in-process memory store, so tests can inject faults.
type testKind struct{ store *memory.Store }

type testConfig struct {
	Vault string `hcl:"test_vault"`
	store *memory.Store
}

// Check refuses a plaintext vault, as the real backends do, so that tests
// can put a backend's problem beside the common ones.
func (c *testConfig) Check(string) error {
	if strings.HasPrefix(c.Vault, "http://") {
		return errors.New("test_vault must be https: write https://")
	}
	return nil
}
func (c *testConfig) Fixed() string { return "test_vault=" + c.Vault }
func (c *testConfig) Open(_ context.Context, p config.OpenParams) (engine.Backend, error) {
	return c.store.Backend(p.TrustDomain, p.ServerID), nil
}

func (k testKind) kinds() []config.Kind {
	return []config.Kind{{Name: "test", Selector: "test_vault", New: func() config.Backend { return &testConfig{store: k.store} }}}
}

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const serverConf = `
server {
    bind_address = "0.0.0.0"
    trust_domain = "example.org"
    ca_key_type = "ec-p384"
}
plugins {
    DataStore "sql" { plugin_data { database_type = "sqlite3" } }
    KeyManager "kmskeeper" {
        plugin_cmd = "/opt/spire/bin/kmskeeper"
        plugin_data {
            test_vault = "v1"
            key_identifier_value = "server-a"
        }
    }
}
`

func TestReadSource(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "km.hcl"), []byte(`test_vault = "v2" key_identifier_value = "b"`), 0o600)
	fileConf := filepath.Join(dir, "server.conf")
	os.WriteFile(fileConf, []byte(`server { trust_domain = "td.org" }
plugins { KeyManager "a" { plugin_data_file = "km.hcl" } }`), 0o600)
	two := write(t, "two.conf", `plugins {
KeyManager "a" { plugin_data { test_vault = "x" } }
KeyManager "b" { plugin_data { test_vault = "y" } }
}`)
	tests := []struct {
		name, path, plugin string
		wantData, wantTD   string
		wantTypes          string
		wantErr            string
	}{
		{name: "server.conf", path: write(t, "server.conf", serverConf), wantData: `test_vault = "v1"`, wantTD: "example.org", wantTypes: "ec-p384"},
		{name: "plugin_data_file", path: fileConf, wantData: `test_vault = "v2"`, wantTD: "td.org", wantTypes: "ec-p256"},
		{name: "body only", path: write(t, "body.hcl", `test_vault = "v3"`), wantData: `test_vault = "v3"`, wantTypes: "ec-p256"},
		{name: "several blocks", path: two, wantErr: "several KeyManager blocks (a, b); choose one with --plugin"},
		{name: "chosen block", path: two, plugin: "b", wantData: `test_vault = "y"`},
		{name: "unknown block", path: two, plugin: "c", wantErr: `no KeyManager "c"`},
		{name: "missing file", path: filepath.Join(dir, "nope"), wantErr: "nope"},
		{name: "bad hcl", path: write(t, "bad.conf", "plugins {"), wantErr: "not valid HCL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := operator.ReadSource(tt.path, tt.plugin)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(src.PluginData, tt.wantData) || src.TrustDomain != tt.wantTD {
				t.Fatalf("source = %+v", src)
			}
			if tt.wantTypes != "" && strings.Join(src.KeyTypes, ",") != tt.wantTypes {
				t.Fatalf("key types = %v, want %s", src.KeyTypes, tt.wantTypes)
			}
		})
	}
}

func setup(t *testing.T) (*memory.Store, *operator.Source, operator.Options) {
	t.Helper()
	store := memory.NewStore()
	src, err := operator.ReadSource(write(t, "server.conf", serverConf), "")
	if err != nil {
		t.Fatal(err)
	}
	return store, src, operator.Options{Kinds: testKind{store}.kinds()}
}

func TestValidate(t *testing.T) {
	store, src, o := setup(t)
	ctx := context.Background()
	r := operator.Validate(ctx, src, o, true)
	if !r.OK() {
		t.Fatalf("report not OK: %+v", r)
	}
	var names []string
	for _, c := range r.Checks {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "configuration,server identity,credentials and client,list keys,probe client,probe EC_P384" {
		t.Fatalf("checks = %s", got)
	}
	if n := len(store.Refs()); n != 0 {
		t.Fatalf("probe left %d keys behind", n)
	}
	var out bytes.Buffer
	operator.PrintReport(&out, r, false)
	if !strings.Contains(out.String(), "All checks passed.") {
		t.Fatalf("table:\n%s", out.String())
	}
}

func TestValidateFailures(t *testing.T) {
	tests := []struct {
		name     string
		hook     func(op string) error
		probe    bool
		failed   string
		fix      string
		leftover int
	}{
		{
			name:   "list permission",
			hook:   func(op string) error { return denyOp(op, "List") },
			failed: "list keys", fix: "grant the role",
		},
		{
			name:   "sign fails during probe; key still retired",
			hook:   func(op string) error { return denyOp(op, "Sign") },
			probe:  true,
			failed: "probe EC_P384", fix: "grant the role",
		},
		{
			name:   "retire fails during probe",
			hook:   func(op string) error { return denyOp(op, "Retire") },
			probe:  true,
			failed: "probe EC_P384", fix: "is left behind", leftover: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, src, o := setup(t)
			store.Hook = func(_ context.Context, op, _ string) error { return tt.hook(op) }
			r := operator.Validate(context.Background(), src, o, tt.probe)
			if r.OK() {
				t.Fatal("report OK, want a failure")
			}
			var bad operator.Check
			for _, c := range r.Checks {
				if !c.OK {
					bad = c
					break
				}
			}
			if bad.Name != tt.failed || !strings.Contains(bad.Fix, tt.fix) || !strings.Contains(bad.Detail, "denied") {
				t.Fatalf("failed check = %+v", bad)
			}
			if n := len(store.Refs()); n != tt.leftover {
				t.Fatalf("%d keys left, want %d", n, tt.leftover)
			}
		})
	}
}

// TestValidateListsEveryConfigurationProblem checks that validate reports
// every problem of the configuration in one run, one failed check each
// naming its key and the file, and says the cloud checks were not run.
func TestValidateListsEveryConfigurationProblem(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // the failed configuration checks' details, in order
	}{
		{
			name: "one unknown key",
			body: `test_vault = "v" key_identifier_value = "s" colour = "red"`,
			want: []string{`unknown configuration key "colour"`},
		},
		{
			name: "unknown key and a plaintext vault",
			body: `test_vault = "http://v" key_identifier_value = "s" colour = "red"`,
			want: []string{`unknown configuration key "colour"`, "test_vault must be https"},
		},
		{
			name: "common and backend problems",
			body: `test_vault = "http://v" max_key_creations_per_hour = 0.5 cleanup_interval = "1y"`,
			want: []string{"max_key_creations_per_hour (line 1) has a value of the wrong type", "set key_identifier_file", `cleanup_interval = "1y" is not a duration`, "test_vault must be https"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, o := setup(t)
			path := write(t, "bad.hcl", tt.body)
			src, err := operator.ReadSource(path, "")
			if err != nil {
				t.Fatal(err)
			}
			o.TrustDomain = "example.org"
			r := operator.Validate(context.Background(), src, o, true)
			if r.OK() || len(r.Checks) != len(tt.want)+1 {
				t.Fatalf("report = %+v, want %d configuration checks and the cloud's", r, len(tt.want))
			}
			for i, w := range tt.want {
				c := r.Checks[i]
				if c.Name != "configuration" || c.OK || !strings.Contains(c.Detail, w) || !strings.HasPrefix(c.Detail, path+": ") || c.Fix == "" {
					t.Errorf("check %d = %+v, want a failed configuration check of %s saying %q with a fix", i, c, path, w)
				}
			}
			last := r.Checks[len(tt.want)]
			if last.Name != "cloud checks" || last.OK || !strings.Contains(last.Detail, "not run") {
				t.Errorf("last check = %+v, want the cloud checks not run", last)
			}
			var out bytes.Buffer
			if err := operator.PrintReport(&out, r, true); err != nil {
				t.Fatal(err)
			}
			var decoded struct {
				OK     bool             `json:"ok"`
				Checks []operator.Check `json:"checks"`
			}
			if err := json.Unmarshal(out.Bytes(), &decoded); err != nil || decoded.OK || len(decoded.Checks) != len(r.Checks) {
				t.Errorf("JSON report %s (%v): want ok=false and %d checks", out.String(), err, len(r.Checks))
			}
		})
	}
}

// TestValidateProbeCreateFailsAfterTheCloudMadeTheKey checks that a probe
// whose creation failed after the cloud made the key (Cloud KMS makes the
// CryptoKey before the public key is read) retires what it left.
func TestValidateProbeCreateFailsAfterTheCloudMadeTheKey(t *testing.T) {
	store, src, o := setup(t)
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	store.Hook = func(_ context.Context, op, keyID string) error {
		if op != "Create" {
			return nil
		}
		if _, err := store.Add("example.org", operator.ProbeServerID, keyID, k, time.Now(), time.Now()); err != nil {
			return err
		}
		return engine.Errorf(codes.PermissionDenied, "reading the public key denied: the identity lacks the permission")
	}
	r := operator.Validate(context.Background(), src, o, true)
	var probe operator.Check
	for _, c := range r.Checks {
		if c.Name == "probe EC_P384" {
			probe = c
		}
	}
	if r.OK() || probe.OK || !strings.Contains(probe.Detail, "denied") {
		t.Fatalf("probe check = %+v", probe)
	}
	if strings.Contains(probe.Detail, "could not be retired") {
		t.Fatalf("probe check = %+v", probe)
	}
	if refs := store.Refs(); len(refs) != 0 {
		t.Fatalf("the failed probe left %v", refs)
	}
}

func denyOp(op, denied string) error {
	if op == denied {
		return engine.Errorf(codes.PermissionDenied, "%s denied: the identity lacks the permission", op)
	}
	return nil
}

// TestKeysListAndGC checks keys list and gc over the one retirement rule
// (engine.Plan), judged on the cloud's clock: this server's newest
// generation of each key ID is current and kept; a superseded one is kept
// while it settles and while any process (a crashed one included) holds a
// live lease on it; other servers' keys are kept until they go stale. gc
// --apply retires what the plan marks, after reading each key again, and
// reports failures per key.
func TestKeysListAndGC(t *testing.T) {
	store, src, o := setup(t)
	ctx := context.Background()
	now := time.Now()
	day := 24 * time.Hour
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	old, _ := store.Add("example.org", "server-a", "x509-CA-A", k, now.Add(-2*day), now.Add(-2*day))
	cur, _ := store.Add("example.org", "server-a", "x509-CA-A", k, now.Add(-day), now.Add(-day))
	stale, _ := store.Add("example.org", "server-b", "x509-CA-A", k, now.Add(-40*day), now.Add(-15*day))
	live, _ := store.Add("example.org", "server-c", "x509-CA-A", k, now.Add(-40*day), now.Add(-2*day))
	store.Add("other.org", "server-a", "x509-CA-A", k, now, now)
	// JWT-Signer-A was rotated 10 minutes ago: its superseded generation
	// settles for engine.DefaultSettle.
	settling, _ := store.Add("example.org", "server-a", "JWT-Signer-A", k, now.Add(-day), now.Add(-day))
	jwt, _ := store.Add("example.org", "server-a", "JWT-Signer-A", k, now.Add(-10*time.Minute), now.Add(-10*time.Minute))
	// x509-CA-B's superseded generation is held by a process that crashed
	// two days ago: its lease lasts engine.LeaseTTL (72 h).
	held, _ := store.Add("example.org", "server-a", "x509-CA-B", k, now.Add(-3*day), now.Add(-3*day))
	caB, _ := store.Add("example.org", "server-a", "x509-CA-B", k, now.Add(-2*day), now.Add(-2*day))
	writeLease(t, store, held, "crashed", now.Add(-2*day))

	s, err := operator.Open(ctx, src, o)
	if err != nil {
		t.Fatal(err)
	}
	rows, _, err := operator.ListKeys(ctx, s, o, now)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rows {
		got[r.Ref] = r.State + "/" + r.Cleanup
	}
	want := map[string]string{
		old: "superseded/retire", cur: "current/keep", stale: "stale/retire", live: "foreign/keep",
		settling: "settling/keep", jwt: "current/keep", held: "held/keep", caB: "current/keep",
	}
	if len(got) != len(want) {
		t.Fatalf("rows = %v (another trust domain's key listed?)", got)
	}
	for ref, w := range want {
		if got[ref] != w {
			t.Errorf("%s: %s, want %s", ref, got[ref], w)
		}
	}
	if !rows[0].ThisServer {
		t.Error("this server's keys are not listed first")
	}
	var table, js bytes.Buffer
	operator.PrintKeys(&table, rows, false)
	if !strings.Contains(table.String(), "server-a (this server)") || !strings.Contains(table.String(), "keep (leased by crashed since ") {
		t.Errorf("table:\n%s", table.String())
	}
	operator.PrintKeys(&js, rows, true)
	var decoded []operator.KeyRow
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil || len(decoded) != len(want) {
		t.Fatalf("JSON: %v", err)
	}

	// Dry run changes nothing; apply retires exactly the marked keys.
	if _, err := operator.GC(ctx, s, o, now, false); err != nil || len(store.Refs()) != 9 {
		t.Fatalf("dry run: %v, %d keys", err, len(store.Refs()))
	}
	if _, err = operator.GC(ctx, s, o, now, true); err != nil {
		t.Fatal(err)
	}
	checkLeft(t, store, "after gc", []string{cur, live, settling, jwt, held, caB}, []string{old, stale})

	// Past the settle period, on the cloud's clock (the local time passed
	// to gc does not count), the settling generation is retired.
	if _, err := operator.GC(ctx, s, o, now.Add(time.Hour), true); err != nil {
		t.Fatal(err)
	}
	checkLeft(t, store, "gc an hour later by the host's clock only", []string{settling}, nil)
	store.Advance(engine.DefaultSettle + time.Minute)
	if _, err = operator.GC(ctx, s, o, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	checkLeft(t, store, "gc once the cloud's clock passed the settle period", []string{cur, held, caB, jwt}, []string{settling})

	// The crashed process's lease ends 72 h after it was written.
	store.Advance(engine.LeaseTTL(engine.Schedule{}) - 2*day - (engine.DefaultSettle + time.Minute) - time.Minute)
	if _, err = operator.GC(ctx, s, o, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	checkLeft(t, store, "gc just before the lease ends", []string{held}, nil)
	store.Advance(2 * time.Minute)
	if _, err = operator.GC(ctx, s, o, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	checkLeft(t, store, "gc once the lease ended", []string{cur, caB, jwt}, []string{held})

	// gc reads each key again right before retiring it: a lease written
	// since the listing (a server adopting the key, or restoring the lease
	// a concurrent write dropped) keeps it.
	adopted, _ := store.Add("example.org", "server-a", "x509-CA-A", k, store.Now().Add(-3*day), store.Now().Add(-3*day))
	store.Hook = func(ctx context.Context, op, keyID string) error {
		if op == "Refresh" && keyID == "x509-CA-A" {
			store.Hook = nil
			writeLease(t, store, adopted, "adopter", store.Now())
		}
		return nil
	}
	rows, err = operator.GC(ctx, s, o, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Ref == adopted && (r.State != "held" || r.Cleanup != "keep") {
			t.Errorf("a key leased between listing and retirement: %s/%s, want held/keep", r.State, r.Cleanup)
		}
	}
	checkLeft(t, store, "gc with a lease written after the listing", []string{adopted}, nil)

	// A failing retirement is reported per key and as an error.
	store.Add("example.org", "server-a", "x509-CA-A", k, store.Now().Add(-3*day), store.Now().Add(-3*day))
	store.Hook = func(_ context.Context, op, _ string) error { return denyOp(op, "Retire") }
	rows, err = operator.GC(ctx, s, o, time.Now(), true)
	if err == nil || !strings.Contains(err.Error(), "1 of the keys") {
		t.Fatalf("gc with failing retire: %v", err)
	}
	failed := 0
	for _, r := range rows {
		if r.Error != "" {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d rows carry an error, want 1: %+v", failed, rows)
	}
}

// writeLease records holder's committed lease on ref, renewed at renewed,
// as the plugin's keep-alive writes it.
func writeLease(t *testing.T, store *memory.Store, ref, holder string, renewed time.Time) {
	t.Helper()
	gens, err := store.Generations("example.org")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gens {
		if g.Ref == ref {
			g.Leases = append(g.Leases, engine.Lease{Holder: holder, Ref: ref, Renewed: renewed})
			if _, err := store.Backend("example.org", g.ServerID).KeepAlive(context.Background(), g); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no key %s", ref)
}

// checkLeft checks that the store still holds every ref of kept and none of
// retired.
func checkLeft(t *testing.T, store *memory.Store, what string, kept, retired []string) {
	t.Helper()
	left := store.Refs()
	for _, ref := range kept {
		if !slices.Contains(left, ref) {
			t.Errorf("%s: %s was retired; want it kept (left: %v)", what, ref, left)
		}
	}
	for _, ref := range retired {
		if slices.Contains(left, ref) {
			t.Errorf("%s: %s is left; want it retired", what, ref)
		}
	}
}

// TestGCDecommissioned checks gc --decommissioned: refused while one of the
// server's keys is fresh enough to be served, then every key of that server
// (in use or not) is retired, and nobody else's.
func TestGCDecommissioned(t *testing.T) {
	store, src, o := setup(t)
	o.Decommissioned = true
	ctx := context.Background()
	now := time.Now()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	old, _ := store.Add("example.org", "server-a", "x509-CA-A", k, now.Add(-100*time.Hour), now.Add(-100*time.Hour))
	cur, _ := store.Add("example.org", "server-a", "JWT-Signer-A", k, now.Add(-120*time.Hour), now.Add(-2*time.Hour))
	other, _ := store.Add("example.org", "server-c", "x509-CA-A", k, now.Add(-40*time.Hour), now.Add(-40*time.Hour))

	s, err := operator.Open(ctx, src, o)
	if err != nil {
		t.Fatal(err)
	}
	// JWT-Signer-A was kept alive 2 hours ago: its server may still run.
	if _, err := operator.GC(ctx, s, o, now, true); err == nil || !strings.Contains(err.Error(), "JWT-Signer-A") || !strings.Contains(err.Error(), "stop that server") {
		t.Fatalf("gc --decommissioned with a fresh key: %v", err)
	}
	if n := len(store.Refs()); n != 3 {
		t.Fatalf("a refused decommission retired keys: %d left", n)
	}

	// The host's clock alone does not count: the cloud's says JWT-Signer-A
	// was kept alive 2 hours ago.
	if _, err := operator.GC(ctx, s, o, now.Add(80*time.Hour), true); err == nil || !strings.Contains(err.Error(), "JWT-Signer-A") {
		t.Fatalf("gc --decommissioned with the host's clock 80 h ahead: %v", err)
	}

	// Two days later on the cloud's clock a server running with the
	// longest liveness interval may still not have updated its keys: refused.
	if err := store.Advance(48 * time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := operator.GC(ctx, s, o, time.Now(), true); err == nil || !strings.Contains(err.Error(), "JWT-Signer-A") {
		t.Fatalf("gc --decommissioned 50 h after a keep-alive (within the 72 h lease period): %v", err)
	}

	// A day later, past the lease period, nothing of server-a has been
	// updated for 74 h.
	if err := store.Advance(24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	later := time.Now()
	rows, err := operator.GC(ctx, s, o, later, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		want := "foreign/keep"
		if r.ServerID == "server-a" {
			want = "decommissioned/retire"
		}
		if got := r.State + "/" + r.Cleanup; got != want {
			t.Errorf("%s (%s of %s): %s, want %s", r.Ref, r.KeyID, r.ServerID, got, want)
		}
	}
	if _, err := operator.GC(ctx, s, o, later, true); err != nil {
		t.Fatal(err)
	}
	left := strings.Join(store.Refs(), " ")
	if strings.Contains(left, old) || strings.Contains(left, cur) || !strings.Contains(left, other) {
		t.Fatalf("after gc --decommissioned --apply: %s", left)
	}
}

// TestCallBudget checks that the operator commands give each cloud call at
// most Options.Budget, as the plugin does: a cloud that never answers fails
// the call when the budget ends instead of holding the command forever.
func TestCallBudget(t *testing.T) {
	store, src, o := setup(t)
	o.Budget = 50 * time.Millisecond
	store.Hook = func(ctx context.Context, op, _ string) error {
		if op != "List" {
			return nil
		}
		<-ctx.Done()
		return engine.Errorf(codes.Unavailable, "%s: no answer within the budget: %w", op, ctx.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := operator.Validate(ctx, src, o, true)
	last := r.Checks[len(r.Checks)-1]
	if r.OK() || last.Name != "list keys" || !strings.Contains(last.Detail, "deadline exceeded") || !strings.Contains(last.Fix, "reachable") {
		t.Fatalf("validate: %+v", r)
	}
	s, err := operator.Open(ctx, src, o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, apply := range []bool{false, true} {
		if _, err := operator.GC(ctx, s, o, time.Now(), apply); err == nil || !strings.Contains(err.Error(), "listing keys") {
			t.Fatalf("gc (apply %v): %v", apply, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the commands ran past the test's deadline: the budget was not applied")
	}
}
