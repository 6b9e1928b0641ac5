package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// writeSPIREDiskKeys writes a keys file in the format of SPIRE's disk
// KeyManager: {"keys": {"<id>": <base64 PKCS#8 DER>}}.
func writeSPIREDiskKeys(t *testing.T, dir string, keys map[string]crypto.Signer) string {
	t.Helper()
	f := map[string]map[string][]byte{"keys": {}}
	for id, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		f["keys"][id] = der
	}
	data, _ := json.Marshal(f)
	path := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMigrateFromDisk starts from SPIRE's disk key manager file, serves and
// signs with those keys through the built binary, moves each ID to the
// backend with GenerateKey, and reports completion.
func TestMigrateFromDisk(t *testing.T) {
	dir := t.TempDir()
	ca, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwt, _ := rsa.GenerateKey(rand.Reader, 2048)
	keys := map[string]crypto.Signer{"x509-CA-A": ca, "JWT-Signer-A": jwt}
	path := writeSPIREDiskKeys(t, dir, keys)
	before, _ := os.ReadFile(path)
	hcl := memoryConfig(dir, fmt.Sprintf("migrate_from { disk_keys_path = %q }", path))

	p := start(t, pluginhost.Options{})
	if err := p.Configure(ctx(t), trustDomain, hcl); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	all, err := p.GetPublicKeys(ctx(t))
	if err != nil || len(all) != 2 {
		t.Fatalf("GetPublicKeys = %v, %v", all, err)
	}
	for id, k := range keys {
		pk, err := p.GetPublicKey(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := x509.MarshalPKIXPublicKey(k.Public())
		if string(pk.PKIX) != string(want) || pk.Fingerprint != engine.Fingerprint(want) {
			t.Fatalf("%s: served key differs from SPIRE's disk key", id)
		}
		// SPIRE's own signing path: a crypto.Signer over SignData.
		s, err := p.Signer(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		d := sha384(t, "migration")
		opts := crypto.SHA384
		sig, err := s.Sign(rand.Reader, d, opts)
		if err != nil {
			t.Fatalf("%s: sign with the disk key: %v", id, err)
		}
		if err := engine.Verify(k.Public(), d, sig, opts); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	// A reload that drops migrate_from while both IDs are still served from
	// the file is refused, naming them, and the plugin keeps serving.
	noMigration := memoryConfig(dir, "")
	if err := p.Configure(ctx(t), trustDomain, noMigration); status.Code(err) != codes.FailedPrecondition ||
		!strings.Contains(err.Error(), "JWT-Signer-A, x509-CA-A are still served from the predecessor") {
		t.Fatalf("re-Configure without migrate_from during the migration = %v; want FailedPrecondition naming both IDs", err)
	}
	// SPIRE rotates each ID: it moves to the backend.
	for _, id := range []string{"x509-CA-A", "JWT-Signer-A"} {
		old, _ := p.GetPublicKey(ctx(t), id)
		nk, err := p.GenerateKey(ctx(t), id, engine.ECP256)
		if err != nil {
			t.Fatal(err)
		}
		if nk.Fingerprint == old.Fingerprint {
			t.Fatalf("%s: GenerateKey kept the disk key", id)
		}
		if _, fp, err := p.SignData(ctx(t), id, sha256sum("x"), crypto.SHA256); err != nil || fp != nk.Fingerprint {
			t.Fatalf("%s after GenerateKey: %v", id, err)
		}
	}
	if _, err := p.WaitLog(ctx(t), func(l pluginhost.LogLine) bool {
		return strings.HasPrefix(l.Message, "Migration complete")
	}); err != nil {
		t.Fatalf("no completion log: %v", err)
	}
	// Once complete, the reload that removes migrate_from is accepted.
	if err := p.Configure(ctx(t), trustDomain, noMigration); err != nil {
		t.Fatalf("re-Configure without migrate_from after completion: %v", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("the disk keys file was written")
	}
}

func TestMigrateFromDiskErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeSPIREDiskKeys(t, dir, map[string]crypto.Signer{})
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"keys": {"x509-CA-A": "bm90IGEga2V5"}}`), 0o600)
	tests := []struct {
		name, extra, want string
	}{
		{"missing file", fmt.Sprintf("migrate_from { disk_keys_path = %q }", filepath.Join(dir, "nope.json")), "nope.json"},
		{"bad key", fmt.Sprintf("migrate_from { disk_keys_path = %q }", bad), "key x509-CA-A in " + bad},
		{"extra key", fmt.Sprintf("migrate_from { disk_keys_path = %q colour = 1 }", good), "disk_keys_path stands alone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, pluginhost.Options{})
			err := p.Configure(ctx(t), trustDomain, memoryConfig(t.TempDir(), tt.extra))
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Configure = %v; want InvalidArgument naming %q", err, tt.want)
			}
			// Nothing half-migrated: the plugin is not configured.
			if _, err := p.GetPublicKeys(ctx(t)); status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("after a refused migration: %v", err)
			}
		})
	}
}

func sha256sum(s string) []byte {
	d := crypto.SHA256.New()
	d.Write([]byte(s))
	return d.Sum(nil)
}
