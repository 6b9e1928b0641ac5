package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// binaries are built once per test run by TestMain.
type binaries struct {
	test    string // -tags kmskeeper_testbackend
	release string // default build
}

var bin binaries // written once by TestMain before any test runs

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kmskeeper-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, b := range []struct {
		out  *string
		sub  string
		tags []string
	}{
		{&bin.test, "test", []string{"kmskeeper_testbackend"}},
		{&bin.release, "release", nil},
	} {
		d := filepath.Join(dir, b.sub)
		if err := os.Mkdir(d, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// Under -race, the plugin process is built with the race detector too.
		if *b.out, err = pluginhost.Build(ctx, pluginhost.BuildOptions{Dir: d, Tags: b.tags, Race: raceEnabled}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}
