package reliability

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// suiteConfig is written once by TestMain before any test runs.
type suiteConfig struct {
	// binary is the plugin built with -tags kmskeeper_testbackend (and
	// -race under -race).
	binary string
	// long selects the long variant (KMSKEEPER_LONG=1).
	long bool
}

var suite suiteConfig

// crashIterations is how many randomized kills each crash point gets.
func (c suiteConfig) crashIterations() int {
	if c.long {
		return 20
	}
	return 3
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kmskeeper-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	suite.long = os.Getenv("KMSKEEPER_LONG") == "1"
	suite.binary, err = pluginhost.Build(ctx, pluginhost.BuildOptions{Dir: dir, Tags: []string{"kmskeeper_testbackend"}, Race: raceEnabled})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
