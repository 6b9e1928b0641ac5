package reliability

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/operator"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// Server IDs of the migration scenarios.
const (
	// migrationServer is the migrating server, on the old and the new side.
	migrationServer = "server-m"
)

// Log messages of a migration.
const (
	migrationMoved    = "Key moved from the predecessor to the backend"
	migrationComplete = "Migration complete" // the start of the message
	alreadyMigrated   = "Key already migrated; the predecessor's key for it is no longer used"
)

// passesExtra runs the plugin's liveness and cleanup passes every second.
const passesExtra = "cleanup_interval = \"1s\"\nliveness_interval = \"1s\"\n"

// decommissionAge is how long the test waits before gc --decommissioned:
// past the lease period (72 h), within which a running server updates every
// key it serves whatever liveness interval it runs with.
var decommissionAge = engine.LeaseTTL(engine.Schedule{}) + 6*time.Hour

// migratedKey is a key ID with the type SPIRE asks for it.
type migratedKey struct {
	id string
	t  engine.KeyType
}

// migratedKeys are the keys every migration moves: SPIRE's CA and JWT
// slots, with the key types a server.conf can ask for.
var migratedKeys = []migratedKey{
	{"x509-CA-A", engine.ECP256},
	{"JWT-Signer-A", engine.RSA2048},
	{"x509-CA-B", engine.ECP384},
}

// cloudSetups are the setups with a cloud emulator, which keys migrate
// into and between.
func cloudSetups() []setup {
	return slices.DeleteFunc(setups(), func(s setup) bool { return s.name == "memory" })
}

// TestMigrateFromDisk moves a trust domain's keys from SPIRE's disk
// KeyManager file into each cloud through the built binary: the file's keys
// are served and sign as they are, and nothing is created in the cloud until
// SPIRE calls GenerateKey on each ID; the file is never written; completion
// is logged once; a restart with migrate_from still set serves the cloud's
// keys, not the file's.
func TestMigrateFromDisk(t *testing.T) {
	forSetups(t, cloudSetups(), func(t *testing.T, s setup) {
		h := newHarness(t, s)
		signers := map[string]crypto.Signer{}
		for _, k := range migratedKeys {
			signers[k.id] = newSigner(t, k.t)
		}
		disk := writeDiskKeys(h, filepath.Join(t.TempDir(), "keys.json"), signers)
		extra := passesExtra + fmt.Sprintf("migrate_from { disk_keys_path = %q }\n", disk.path)
		p := h.start(migrationServer, extra)

		mustServe(t, h, p, disk.public)
		if got := own(h.v.keys(t), migrationServer); len(got) != 0 {
			t.Fatalf("Configure created %v in the cloud; the disk keys are served from the file", refs(got))
		}

		moved := moveAll(t, h, p, disk.public)
		waitMigrationComplete(t, p)
		waitPasses(t, p, cleanupDone, countLogs(p, cleanupDone), 2)
		mustHold(t, h.v, moved)
		if data, err := os.ReadFile(disk.path); err != nil || !bytes.Equal(data, disk.data) {
			t.Errorf("the disk keys file changed (%v)", err)
		}

		// A restart with migrate_from still set: the cloud's keys are newer
		// than the file, so they win and nothing is inherited.
		if err := p.Close(); err != nil {
			t.Logf("stopping the plugin: %v", err)
		}
		p = h.start(migrationServer, extra)
		mustServe(t, h, p, moved)
		waitLogs(t, p, alreadyMigrated, len(migratedKeys))
		mustHold(t, h.v, moved)
	})
}

// TestMigrateBetweenClouds moves a server's keys from one cloud to the
// other, both ways, through the built binary: kmskeeper on cloud A creates
// the keys; the server then runs on cloud B with A's configuration in
// migrate_from, serves A's keys as they are, and moves each ID to B at
// GenerateKey. A's keys are never touched by the plugin, its background
// passes or a restart. kmskeeper gc then retires them as an operator runs
// it: not with A's configuration as it was (the keys are that server's
// current keys), but with --decommissioned, once no process can be serving
// them.
func TestMigrateBetweenClouds(t *testing.T) {
	clouds := cloudSetups()
	for _, from := range clouds {
		for _, to := range clouds {
			if from.name == to.name {
				continue
			}
			t.Run(from.name+" to "+to.name, func(t *testing.T) {
				t.Parallel()
				migrateBetween(t, newHarness(t, to, from))
			})
		}
	}
}

// migrateBetween migrates from h's source vault to its vault.
func migrateBetween(t *testing.T, h *harness) {
	src := h.sources[0]
	oldData := src.pluginData(migrationServer, "")

	// The old server: kmskeeper on cloud A creates the keys, then stops.
	pa := h.launch()
	if err := h.configureData(pa, oldData); err != nil {
		t.Fatalf("Configure on the old cloud: %v", err)
	}
	old := map[string]engine.PublicKey{}
	for _, k := range migratedKeys {
		pk, err := pa.GenerateKey(callCtx(t), k.id, k.t)
		if err != nil {
			t.Fatalf("GenerateKey %s on the old cloud: %v", k.id, h.record(err))
		}
		old[k.id] = pk
	}
	if err := pa.Close(); err != nil {
		t.Logf("stopping the old server: %v", err)
	}
	before := mustHold(t, src, old)

	// The new server on cloud B, with A's plugin_data as migrate_from.
	extra := passesExtra + "migrate_from {\n" + oldData + "}\n"
	p := h.start(migrationServer, extra)
	mustServe(t, h, p, old)
	if got := own(h.v.keys(t), migrationServer); len(got) != 0 {
		t.Fatalf("Configure created %v in the new cloud; the old cloud's keys are served from there", refs(got))
	}
	moved := moveAll(t, h, p, old)
	waitMigrationComplete(t, p)

	// The plugin's passes and a restart never touch the old cloud.
	waitPasses(t, p, cleanupDone, countLogs(p, cleanupDone), 2)
	waitPasses(t, p, livenessDone, countLogs(p, livenessDone), 2)
	mustBeUntouched(t, src, before)
	if err := p.Close(); err != nil {
		t.Logf("stopping the plugin: %v", err)
	}
	p = h.start(migrationServer, extra)
	mustServe(t, h, p, moved)
	waitLogs(t, p, alreadyMigrated, len(migratedKeys))
	mustBeUntouched(t, src, before)
	mustHold(t, h.v, moved)

	// kmskeeper gc with the old configuration as it was: the keys are
	// that server's current keys (the newest committed generation of each
	// key ID, which a server starting with that configuration adopts),
	// which the retirement rule never retires.
	for _, apply := range []bool{false, true} {
		args := []string{"--dry-run"}
		if apply {
			args = []string{"--apply"}
		}
		mustPlan(t, h.gc(t, oldData, args...), string(engine.StateCurrent), "keep")
		mustBeUntouched(t, src, before)
	}
	// gc --decommissioned says the old server has stopped for good. It is
	// refused while the old keys are fresh enough for a process to be
	// serving them.
	h.gcRefused(t, oldData, "stop that server", "--decommissioned", "--apply")
	mustBeUntouched(t, src, before)

	// A day and a half later it is still refused: a server with a
	// liveness interval longer than the default may not have updated them
	// yet.
	src.advance(t, 36*time.Hour)
	h.gcRefused(t, oldData, "stop that server", "--decommissioned", "--apply")
	mustBeUntouched(t, src, before)

	// Past the lease period nothing has updated them (the new server reads
	// them without writing). gc judges ages on the cloud's clock (the Date
	// of its answers, and creation times); a key another server of the
	// trust domain creates on A now must not be touched.
	src.advance(t, decommissionAge-36*time.Hour)
	now := src.now(t)
	bystander := src.seed(t, "server-other", "x509-CA-A", now, now)
	mustPlan(t, h.gc(t, oldData, "--decommissioned"), "decommissioned", "retire")
	mustBeUntouched(t, src, before)
	mustPlan(t, h.gc(t, oldData, "--decommissioned", "--apply"), "decommissioned", "retired")
	if left := own(src.keys(t), migrationServer); len(left) != 0 {
		t.Errorf("after gc --decommissioned --apply the old cloud still holds %v", refs(left))
	}
	if others := own(src.keys(t), bystander.ServerID); len(others) != 1 || others[0].Ref != bystander.Ref {
		t.Errorf("gc --apply touched another server's live key: the old cloud holds %v of it", refs(others))
	}

	// A restart that still has migrate_from once the old keys are gone:
	// the new cloud's keys are served.
	if err := p.Close(); err != nil {
		t.Logf("stopping the plugin: %v", err)
	}
	p = h.start(migrationServer, extra)
	mustServe(t, h, p, moved)
}

// TestMigrateFromDiskRefused starts the plugin on each cloud with disk
// migrations that cannot be done: a file that cannot be read, is not JSON,
// holds a key SPIRE has no type for, or holds a key ID the cloud already has
// from before the file. Configure fails naming the file and the key, the
// plugin serves nothing, nothing is created in the cloud, and the server
// already running there keeps serving its key.
func TestMigrateFromDiskRefused(t *testing.T) {
	forSetups(t, cloudSetups(), func(t *testing.T, s setup) {
		h := newHarness(t, s)
		// The server already runs on the cloud without migrate_from, with
		// a key it made there an hour ago.
		made := h.v.now(t).Add(-time.Hour)
		h.v.seed(t, migrationServer, "x509-CA-A", made, made)
		prev := h.start(migrationServer, "")
		prevKey := mustGetPublicKey(t, h, prev, "x509-CA-A")
		before := own(h.v.keys(t), migrationServer)

		dir := t.TempDir()
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		malformed := filepath.Join(dir, "malformed.json")
		if err := os.WriteFile(malformed, []byte(`{"keys": {"x509-CA-A": `), 0o600); err != nil {
			t.Fatal(err)
		}
		edFile := writeDiskKeys(h, filepath.Join(dir, "ed25519.json"), map[string]crypto.Signer{
			"x509-CA-B": newSigner(t, engine.ECP256), "JWT-Signer-B": ed,
		})
		// Written after the cloud's x509-CA-A was made.
		conflict := writeDiskKeys(h, filepath.Join(dir, "keys.json"), map[string]crypto.Signer{
			"x509-CA-A": newSigner(t, engine.ECP256), "JWT-Signer-A": newSigner(t, engine.ECP256),
		})

		tests := []struct {
			name, path string
			code       codes.Code
			want       []string
		}{
			{"missing file", filepath.Join(dir, "missing.json"), codes.InvalidArgument, []string{"reading disk_keys_path " + filepath.Join(dir, "missing.json")}},
			{"unreadable file", dir, codes.InvalidArgument, []string{"reading disk_keys_path " + dir}},
			{"malformed JSON", malformed, codes.InvalidArgument, []string{malformed + " is not a SPIRE disk key manager file"}},
			{"Ed25519 key", edFile.path, codes.InvalidArgument, []string{"key JWT-Signer-B in " + edFile.path, "unsupported public key type"}},
			{"key older in the cloud", conflict.path, codes.FailedPrecondition, []string{"key x509-CA-A exists both in the disk key manager file " + conflict.path, before[0].Ref, "the backend's key is older"}},
		}
		for _, tt := range tests {
			p := h.launch()
			err := h.configure(p, migrationServer, fmt.Sprintf("migrate_from { disk_keys_path = %q }\n", tt.path))
			if status.Code(err) != tt.code || !containsAll(err, tt.want) {
				t.Errorf("%s: Configure = %v; want %v naming %q", tt.name, err, tt.code, tt.want)
			}
			if pks, err := p.GetPublicKeys(callCtx(t)); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("%s: after the refused Configure the plugin serves %d keys (%v); want none", tt.name, len(pks), err)
			}
			mustBeUntouched(t, h.v, before)
			if err := h.sign(callCtx(t), prev, prevKey); err != nil {
				t.Errorf("%s: the running server no longer signs: %v", tt.name, err)
			}
		}
	})
}

// diskKeys is a keys file of SPIRE's disk KeyManager.
type diskKeys struct {
	path string
	// data is the file as written.
	data []byte
	// public holds the keys as SPIRE's journal knows them, by key ID.
	public map[string]engine.PublicKey
}

// writeDiskKeys writes signers at path as SPIRE's disk KeyManager does:
// {"keys": {"<id>": <base64 PKCS#8 DER>}}. Their private material joins the
// secrets scan.
func writeDiskKeys(h *harness, path string, signers map[string]crypto.Signer) diskKeys {
	t := h.t
	t.Helper()
	file := struct {
		Keys map[string][]byte `json:"keys"`
	}{Keys: map[string][]byte{}}
	d := diskKeys{path: path, public: map[string]engine.PublicKey{}}
	for id, k := range signers {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		file.Keys[id] = der
		h.addSecrets(privateMaterial(t, der)...)
		if kt, err := engine.KeyTypeOf(k.Public()); err == nil {
			d.public[id] = publicKeyOf(t, id, kt, k.Public())
		}
	}
	var err error
	if d.data, err = json.Marshal(file); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, d.data, 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}

// newSigner generates a private key of type kt.
func newSigner(t *testing.T, kt engine.KeyType) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kt {
	case engine.ECP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case engine.ECP384:
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case engine.RSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case engine.RSA4096:
		k, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		t.Fatalf("no key type %v", kt)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publicKeyOf is pub as the plugin serves it under id.
func publicKeyOf(t *testing.T, id string, kt engine.KeyType, pub crypto.PublicKey) engine.PublicKey {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return engine.PublicKey{ID: id, Type: kt, PKIX: der, Fingerprint: engine.Fingerprint(der)}
}

// mustServe checks that p serves exactly want (same IDs, types and public
// keys) and signs with each: every signature verifies under want's key.
func mustServe(t *testing.T, h *harness, p *pluginhost.Plugin, want map[string]engine.PublicKey) {
	t.Helper()
	got, err := p.GetPublicKeys(callCtx(t))
	if err != nil {
		t.Fatalf("GetPublicKeys: %v", h.record(err))
	}
	if len(got) != len(want) {
		t.Errorf("the plugin serves %d keys, want %d", len(got), len(want))
	}
	for _, pk := range got {
		w, ok := want[pk.ID]
		if !ok || w.Type != pk.Type || w.Fingerprint != pk.Fingerprint || !bytes.Equal(w.PKIX, pk.PKIX) {
			t.Errorf("the plugin serves %s as %v %s, want %v %s", pk.ID, pk.Type, pk.Fingerprint, w.Type, w.Fingerprint)
		}
	}
	for _, pk := range want {
		if err := h.sign(callCtx(t), p, pk); err != nil {
			t.Errorf("signing with %s: %v", pk.ID, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// moveAll calls GenerateKey on every ID of old with its type, as SPIRE's
// rotations do, and checks that each new key is served and signs at once
// and that none of old is served any more. It returns the new keys.
func moveAll(t *testing.T, h *harness, p *pluginhost.Plugin, old map[string]engine.PublicKey) map[string]engine.PublicKey {
	t.Helper()
	moved := map[string]engine.PublicKey{}
	for _, k := range migratedKeys {
		pk, err := p.GenerateKey(callCtx(t), k.id, k.t)
		if err != nil {
			t.Fatalf("GenerateKey %s: %v", k.id, h.record(err))
		}
		if pk.Fingerprint == old[k.id].Fingerprint {
			t.Fatalf("GenerateKey %s kept the old key", k.id)
		}
		if err := h.sign(callCtx(t), p, pk); err != nil {
			t.Fatalf("signing with %s after GenerateKey: %v", k.id, err)
		}
		moved[k.id] = pk
	}
	mustServe(t, h, p, moved)
	mustHold(t, h.v, moved)
	return moved
}

// mustHold checks that v holds exactly one generation of each key of want
// for migrationServer, with want's public key, enabled, and returns them.
func mustHold(t *testing.T, v vault, want map[string]engine.PublicKey) []key {
	t.Helper()
	got := own(v.keys(t), migrationServer)
	if len(got) != len(want) {
		t.Fatalf("the cloud holds %v for %s, want one generation of each of %d keys", refs(got), migrationServer, len(want))
	}
	for _, k := range got {
		if w, ok := want[k.KeyID]; !ok || w.Fingerprint != k.Fingerprint || k.Disabled {
			t.Fatalf("the cloud holds %s (%s, disabled %v) for %s, want the key %s", k.Ref, k.Fingerprint, k.Disabled, k.KeyID, w.Fingerprint)
		}
	}
	return got
}

// mustBeUntouched checks that v holds before as it was for
// migrationServer: the same generations with the same key material, still
// enabled (on Cloud KMS, no destruction scheduled), never kept alive, and
// nothing else.
func mustBeUntouched(t *testing.T, v vault, before []key) {
	t.Helper()
	describe := func(keys []key) []string {
		var out []string
		for _, k := range keys {
			out = append(out, fmt.Sprintf("%s %s version=%q fingerprint=%s created=%s updated=%s disabled=%v",
				k.KeyID, k.Ref, k.Version, k.Fingerprint, k.Created.UTC().Format(time.RFC3339Nano), k.Updated.UTC().Format(time.RFC3339Nano), k.Disabled))
		}
		return out
	}
	want, got := describe(before), describe(own(v.keys(t), migrationServer))
	if !slices.Equal(want, got) {
		t.Fatalf("the old keys changed:\nwant %s\n got %s", strings.Join(want, "\n     "), strings.Join(got, "\n     "))
	}
}

// waitMigrationComplete waits for the plugin's completion log line and
// checks the migration's log: one line per moved key with the IDs left,
// and one completion line.
func waitMigrationComplete(t *testing.T, p *pluginhost.Plugin) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := p.WaitLog(ctx, func(l pluginhost.LogLine) bool { return strings.HasPrefix(l.Message, migrationComplete) }); err != nil {
		t.Fatalf("the plugin did not log the end of the migration: %v", err)
	}
	var left []float64
	complete := 0
	for _, l := range p.Logs() {
		switch {
		case l.Message == migrationMoved:
			n, _ := l.Fields["keys_left"].(float64)
			left = append(left, n)
		case strings.HasPrefix(l.Message, migrationComplete):
			complete++
		}
	}
	want := []float64{}
	for n := len(migratedKeys) - 1; n >= 0; n-- {
		want = append(want, float64(n))
	}
	if !slices.Equal(left, want) || complete != 1 {
		t.Errorf("the plugin logged keys_left %v and the completion %d times; want %v and once", left, complete, want)
	}
}

// waitLogs waits until p has logged msg n times.
func waitLogs(t *testing.T, p *pluginhost.Plugin, msg string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d %q lines", n, msg), func() bool { return countLogs(p, msg) >= n })
	if got := countLogs(p, msg); got != n {
		t.Errorf("%d %q lines, want %d", got, msg, n)
	}
}

// gc runs the built binary's `kmskeeper gc` as an operator does, on a file
// holding pluginData, with flags, and returns what it printed (--json).
func (h *harness) gc(t *testing.T, pluginData string, flags ...string) []operator.KeyRow {
	t.Helper()
	stdout, stderr, err := h.runGC(t, pluginData, flags)
	if err != nil {
		t.Fatalf("kmskeeper gc %s: %v\n%s%s", strings.Join(flags, " "), err, stdout, stderr)
	}
	var rows []operator.KeyRow
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		t.Fatalf("kmskeeper gc %s printed no JSON rows: %v\n%s", strings.Join(flags, " "), err, stdout)
	}
	return rows
}

// gcRefused runs `kmskeeper gc` with flags and checks that it fails saying
// want.
func (h *harness) gcRefused(t *testing.T, pluginData, want string, flags ...string) {
	t.Helper()
	stdout, stderr, err := h.runGC(t, pluginData, flags)
	if err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("kmskeeper gc %s: %v, want a failure saying %q\n%s%s", strings.Join(flags, " "), err, want, stdout, stderr)
	}
}

func (h *harness) runGC(t *testing.T, pluginData string, flags []string) (stdout, stderr string, err error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plugin-data.hcl")
	if err := os.WriteFile(path, []byte(pluginData), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"gc", "--config", path, "--trust-domain", trustDomain, "--json"}, flags...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.binary, args...)
	cmd.Env = append(os.Environ(), h.env()...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	h.keep(out.String())
	h.keep(errOut.String())
	if strings.Contains(errOut.String(), "DATA RACE") {
		t.Errorf("kmskeeper gc reported a data race:\n%s", errOut.String())
	}
	return out.String(), errOut.String(), err
}

// mustPlan checks that gc listed every migrated key of migrationServer
// once, in state with cleanup.
func mustPlan(t *testing.T, rows []operator.KeyRow, state, cleanup string) {
	t.Helper()
	var ids []string
	for _, r := range rows {
		if r.ServerID != migrationServer {
			continue
		}
		ids = append(ids, r.KeyID)
		if r.State != state || r.Cleanup != cleanup || r.Error != "" {
			t.Errorf("gc: %s %s is %q, cleanup %q (%s); want %q, %q", r.KeyID, r.Ref, r.State, r.Cleanup, r.Error, state, cleanup)
		}
	}
	slices.Sort(ids)
	var want []string
	for _, k := range migratedKeys {
		want = append(want, k.id)
	}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("gc listed %v of %s, want %v", ids, migrationServer, want)
	}
}

// containsAll reports whether err's message contains every one of want.
func containsAll(err error, want []string) bool {
	if err == nil {
		return false
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			return false
		}
	}
	return true
}
