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

// lastingDeadline is the caller's deadline under a fault that does not
// clear: SPIRE's 30 s in the long run; 8 s in CI, which the plugin answers
// 2 s before as it answers 2 s before SPIRE's (the engine keeps that margin
// before any caller's deadline), so the CI run does not wait out 25 s budgets.
func (c suiteConfig) lastingDeadline() time.Duration {
	if c.long {
		return 30 * time.Second
	}
	return 8 * time.Second
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
