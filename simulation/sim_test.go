package simulation

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// regressions are seeds that once found a failure; each replays exactly.
var regressions = []uint64{1, 2, 4, 19, 25, 35, 37, 805, 1242, 1473, 1531, 1647, 1662, 1868, 1872, 2023, 2251, 2692, 11953, 15988, 63276}

// TestSimulation runs a short sweep of seeds (KMSKEEPER_SIM=<count> runs
// that many instead, from seed KMSKEEPER_SIM_FIRST or 1, so that a long run
// can be split between processes; KMSKEEPER_SIM_SEED=<seed> replays one with
// its trace).
func TestSimulation(t *testing.T) {
	if seed := os.Getenv("KMSKEEPER_SIM_SEED"); seed != "" {
		n, err := strconv.ParseUint(seed, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		r := Run(n, Options{Trace: true})
		t.Log(strings.Join(r.Trace, "\n"))
		t.Logf("setup: %s", r.Setup)
		if r.Failed() {
			t.Fatalf("seed %d: %s", n, strings.Join(r.Violations, "\n"))
		}
		return
	}
	count := 300
	if testing.Short() {
		count = 50
	}
	if v := os.Getenv("KMSKEEPER_SIM"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		count = n
	}
	first := uint64(1)
	if v := os.Getenv("KMSKEEPER_SIM_FIRST"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		first = n
	}
	start := time.Now()
	var total Stats
	failed := 0
	seeds := append([]uint64{}, regressions...)
	for i := range count {
		seeds = append(seeds, first+uint64(i))
	}
	for _, seed := range seeds {
		r := Run(seed, Options{})
		total = total.Add(r.Stats)
		if r.Failed() {
			failed++
			if failed <= 10 {
				t.Errorf("seed %d (%s):\n  %s\nreplay: KMSKEEPER_SIM_SEED=%d go test ./simulation -run TestSimulation -v", seed, r.Setup, strings.Join(r.Violations[:min(len(r.Violations), 3)], "\n  "), seed)
			}
		}
	}
	t.Logf("%d schedules, %d steps, %s: %d failed; %+v", len(seeds), total.Steps, time.Since(start).Round(time.Millisecond), failed, total)
}
