package predecessor_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/predecessor"
)

// writeDiskKeys writes a keys file as SPIRE's disk KeyManager does.
func writeDiskKeys(t *testing.T, keys map[string]crypto.Signer) string {
	t.Helper()
	f := struct {
		Keys map[string][]byte `json:"keys"`
	}{Keys: map[string][]byte{}}
	for id, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		f.Keys[id] = der
	}
	data, _ := json.Marshal(f)
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDiskMigration(t *testing.T) {
	ca, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwt, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	path := writeDiskKeys(t, map[string]crypto.Signer{"x509-CA-A": ca, "JWT-Signer-A": jwt})
	before, _ := os.ReadFile(path)

	disk, err := predecessor.ReadDisk(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	store := memory.NewStore()
	m, err := engine.New(engine.Options{
		Backend: store.Backend("example.org", "s1"), ServerID: "s1", Predecessor: disk,
		Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	// The same public keys as before, so SPIRE's journal matches.
	pk, err := m.GetPublicKey(ctx, "x509-CA-A")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := x509.MarshalPKIXPublicKey(ca.Public())
	if string(pk.PKIX) != string(want) {
		t.Fatal("served public key differs from the disk key")
	}
	d := sha256.Sum256([]byte("x"))
	sig, fp, err := m.SignData(ctx, "x509-CA-A", d[:], crypto.SHA256)
	if err != nil || fp != pk.Fingerprint || !ecdsa.VerifyASN1(&ca.PublicKey, d[:], sig) {
		t.Fatalf("signing with the disk key: %v", err)
	}

	// GenerateKey moves each ID to the backend.
	for _, id := range []string{"x509-CA-A", "JWT-Signer-A"} {
		npk, err := m.GenerateKey(ctx, id, engine.ECP256)
		if err != nil {
			t.Fatal(err)
		}
		_, fp, err := m.SignData(ctx, id, d[:], crypto.SHA256)
		if err != nil || fp != npk.Fingerprint {
			t.Fatalf("after GenerateKey %s: %v", id, err)
		}
	}
	if len(m.MigrationPending()) != 0 {
		t.Fatalf("pending = %v", m.MigrationPending())
	}
	if n := strings.Count(logs.String(), "Migration complete"); n != 1 {
		t.Fatalf("completion logged %d times:\n%s", n, logs.String())
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("the disk keys file was written")
	}
	if len(store.Refs()) != 2 {
		t.Fatalf("backend holds %d keys, want 2", len(store.Refs()))
	}

	// A restart with migrate_from still set serves the cloud keys: they
	// are newer than the file.
	time.Sleep(10 * time.Millisecond)
	m2, _ := engine.New(engine.Options{Backend: store.Backend("example.org", "s1"), ServerID: "s1", Predecessor: disk})
	defer m2.Close()
	if err := m2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if len(m2.MigrationPending()) != 0 {
		t.Fatal("restart went back to the disk keys")
	}
}

func TestDiskMigrationConflict(t *testing.T) {
	store := memory.NewStore()
	old := time.Now().Add(-time.Hour)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	store.Add("example.org", "s1", "x509-CA-A", k, old, old)
	path := writeDiskKeys(t, map[string]crypto.Signer{"x509-CA-A": k})
	disk, err := predecessor.ReadDisk(path)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := engine.New(engine.Options{Backend: store.Backend("example.org", "s1"), ServerID: "s1", Predecessor: disk})
	err = m.Load(context.Background())
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "x509-CA-A exists both in") {
		t.Fatalf("Load = %v", err)
	}
}

// TestDiskMigrationSameSecond restarts with migrate_from still set after
// keys were migrated in the same second as the file was written, in a cloud
// that keeps creation times in whole seconds (Key Vault): they are the
// migration's keys, not keys from before it. A key from the second before
// the file is still a conflict.
func TestDiskMigrationSameSecond(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	path := writeDiskKeys(t, map[string]crypto.Signer{"x509-CA-A": k})
	mtime := time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	disk, err := predecessor.ReadDisk(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		created  time.Time
		conflict bool
	}{
		{"same second", mtime.Truncate(time.Second), false},
		{"second before", mtime.Truncate(time.Second).Add(-time.Second), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := memory.NewStore()
			cloud, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			store.Add("example.org", "s1", "x509-CA-A", cloud, tt.created, tt.created)
			m, _ := engine.New(engine.Options{Backend: store.Backend("example.org", "s1"), ServerID: "s1", Predecessor: disk})
			defer m.Close()
			err := m.Load(context.Background())
			if tt.conflict {
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "x509-CA-A exists both in") {
					t.Fatalf("Load = %v; want the conflict", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load = %v", err)
			}
			if len(m.MigrationPending()) != 0 {
				t.Fatal("the file's key is served instead of the one the migration made")
			}
		})
	}
}

func TestReadDiskErrors(t *testing.T) {
	dir := t.TempDir()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	tests := []struct {
		name, content, want string
	}{
		{"not json", "{", "not a SPIRE disk key manager file"},
		{"no keys", `{"other": 1}`, `no "keys" object`},
		{"not pkcs8", `{"keys": {"x509-CA-A": "aGVsbG8="}}`, "x509-CA-A"},
	}
	for _, k := range []struct {
		name string
		key  crypto.Signer
		want string
	}{{"ed25519", edKey, "unsupported public key type"}, {"rsa1024", small, "unsupported RSA size 1024"}} {
		der, _ := x509.MarshalPKCS8PrivateKey(k.key)
		b, _ := json.Marshal(map[string]map[string][]byte{"keys": {"JWT-Signer-A": der}})
		tests = append(tests, struct{ name, content, want string }{k.name, string(b), k.want})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			os.WriteFile(p, []byte(tt.content), 0o600)
			_, err := predecessor.ReadDisk(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("ReadDisk error = %v; want one naming %s and %q", err, p, tt.want)
			}
		})
	}
	if _, err := predecessor.ReadDisk(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file error = %v", err)
	}
}

func TestBackendMigration(t *testing.T) {
	oldStore, newStore := memory.NewStore(), memory.NewStore()
	ctx := context.Background()
	// The old cloud holds two generations of one key for the old server ID.
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	t0 := time.Now().Add(-2 * time.Hour)
	oldStore.Add("example.org", "old-id", "x509-CA-A", k1, t0, t0)
	oldStore.Add("example.org", "old-id", "x509-CA-A", k2, t0.Add(time.Minute), t0)
	oldStore.Add("example.org", "someone-else", "x509-CA-B", k1, t0, t0)
	src := predecessor.FromBackend("old cloud", oldStore.Backend("example.org", "old-id"), "old-id")
	m, _ := engine.New(engine.Options{Backend: newStore.Backend("example.org", "new-id"), ServerID: "new-id", Predecessor: src})
	defer m.Close()
	if err := m.Load(ctx); err != nil {
		t.Fatal(err)
	}
	pk, err := m.GetPublicKey(ctx, "x509-CA-A")
	want, _ := x509.MarshalPKIXPublicKey(k2.Public())
	if err != nil || string(pk.PKIX) != string(want) {
		t.Fatalf("did not serve the newest old-cloud key: %v", err)
	}
	if _, err := m.GetPublicKey(ctx, "x509-CA-B"); status.Code(err) != codes.NotFound {
		t.Fatalf("another server's key was inherited: %v", err)
	}
	if _, err := m.GenerateKey(ctx, "x509-CA-A", engine.ECP256); err != nil {
		t.Fatal(err)
	}
	// Nothing in the old cloud was touched, even after a cleanup pass.
	if _, err := m.Cleanup(ctx, true); err != nil {
		t.Fatal(err)
	}
	if n := len(oldStore.Refs()); n != 3 {
		t.Fatalf("old cloud holds %d keys, want all 3 untouched", n)
	}
}
