package simulation

import (
	"slices"
	"testing"
)

// TestReplay checks that a seed replays exactly: the same trace, step by
// step, twice. Without it a failing seed could not be trusted to show the
// failure again.
func TestReplay(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		a, b := Run(seed, Options{Trace: true}), Run(seed, Options{Trace: true})
		if !slices.Equal(a.Trace, b.Trace) {
			i := 0
			for i < min(len(a.Trace), len(b.Trace)) && a.Trace[i] == b.Trace[i] {
				i++
			}
			t.Errorf("seed %d: the runs part at line %d of %d/%d", seed, i, len(a.Trace), len(b.Trace))
		}
	}
}
