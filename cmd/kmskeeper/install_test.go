package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstall checks that install copies the running binary, into a
// directory or to a file path (replacing an old copy), executable, and
// prints the copy's SHA-256 for plugin_checksum.
func TestInstall(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(want)
	dir := t.TempDir()
	old := filepath.Join(dir, "old")
	if err := os.WriteFile(old, []byte("an older release"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, arg, path string
	}{
		{"into a directory", dir, filepath.Join(dir, "kmskeeper")},
		{"to a new file", filepath.Join(dir, "plugin"), filepath.Join(dir, "plugin")},
		{"over an older copy", old, old},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runKmskeeper(t, "install", tt.arg)
			if r.code != 0 {
				t.Fatalf("%s", r)
			}
			got, err := os.ReadFile(tt.path)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s does not hold this binary (%v)", tt.path, err)
			}
			if st, _ := os.Stat(tt.path); st.Mode().Perm() != 0o755 {
				t.Errorf("mode %v, want 0755", st.Mode().Perm())
			}
			if !strings.Contains(r.stdout, "sha256: "+hex.EncodeToString(sum[:])) || !strings.Contains(r.stdout, tt.path) {
				t.Errorf("output does not name the copy and its SHA-256:\n%s", r.stdout)
			}
		})
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".kmskeeper-install-*")); len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
	for _, args := range [][]string{{"install"}, {"install", "a", "b"}} {
		if r := runKmskeeper(t, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, r.code)
		}
	}
	if r := runKmskeeper(t, "install", filepath.Join(dir, "missing", "kmskeeper")); r.code != 1 || !strings.Contains(r.err.Error(), "missing") {
		t.Errorf("install into a missing directory: %s", r)
	}
}
