package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// runInstall copies the running binary to a path. The release's container
// image holds the binary and nothing else (no shell, no cp), so in
// Kubernetes' init-container pattern the binary copies itself into the
// volume it shares with the SPIRE server container. It prints the copy's
// SHA-256, the value plugin_checksum takes.
func runInstall(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: kmskeeper install <path or directory>

Copies this kmskeeper binary to the path given (into it, as "kmskeeper", when
it is a directory), with mode 0755, replacing what is there in one step, and
prints the copy's SHA-256: the value of plugin_checksum in server.conf.

The container image's init container runs it to put the plugin into a volume
shared with the SPIRE server container (docs/kubernetes.md).`)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"install: give exactly one destination path"}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install: finding this binary: %w", err)
	}
	dest := fs.Arg(0)
	if st, err := os.Stat(dest); err == nil && st.IsDir() {
		dest = filepath.Join(dest, "kmskeeper")
	}
	sum, err := copyExecutable(self, dest)
	if err != nil {
		return fmt.Errorf("install: copying %s to %s: %w", self, dest, err)
	}
	fmt.Fprintf(stdout, "installed %s\nsha256: %s\n", dest, sum)
	return nil
}

// copyExecutable copies src to dest through a temporary file in dest's
// directory, renamed into place once complete and synced, so that a SPIRE
// server starting meanwhile never runs half a binary. It returns the
// copy's SHA-256 in hex.
func copyExecutable(src, dest string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".kmskeeper-install-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), in)
	err = errors.Join(err, tmp.Chmod(0o755), tmp.Sync(), tmp.Close())
	if err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
