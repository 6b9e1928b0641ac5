package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// TestMain lets the test binary play measurement 8's signer children and
// its floor plugin, as the bench binary does (they run os.Executable).
func TestMain(m *testing.M) {
	if isFloorPlugin() {
		floorMain()
		return
	}
	if spec := os.Getenv(signerEnv); spec != "" {
		os.Exit(signerMain(spec))
	}
	os.Exit(m.Run())
}

// TestShortRun runs the whole harness with tiny sample sizes, so that it
// cannot rot: every measurement must produce its rows, each with a value or
// an explicit "not measured" reason. It asserts no timing.
func TestShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin and runs both emulators (about 45 s under -race on 2 cores)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	rows, err := Run(ctx, Options{Backends: []string{"azure", "gcp"}, Short: true, Race: raceEnabled, Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	var table strings.Builder
	printTable(&table, rows)
	t.Logf("progress:\n%s\ntable:\n%s", progress.String(), table.String())

	for _, backend := range []string{"azure", "gcp"} {
		seen := map[int]int{}
		for _, r := range rows {
			if r.Backend != backend {
				continue
			}
			seen[r.ID]++
			switch {
			case r.Value == "":
				t.Errorf("%s %q: no value", backend, r.Measurement)
			case r.Verdict == NotMeasured && !strings.HasPrefix(r.Value, "not measured: "):
				t.Errorf("%s %q: not measured without a reason: %q", backend, r.Measurement, r.Value)
			case r.Verdict != NotMeasured && strings.HasPrefix(r.Value, "not measured"):
				t.Errorf("%s %q: verdict %q with value %q", backend, r.Measurement, r.Verdict, r.Value)
			case r.Target == "":
				t.Errorf("%s %q: no target", backend, r.Measurement)
			case (r.ID == 1 || r.ID == 2 || r.ID == 8) && !strings.Contains(r.Value, "floor"):
				// The floor plugins run beside the plugin in these rows;
				// without them the misses lose their explanation.
				t.Errorf("%s %q: no floor figure in %q", backend, r.Measurement, r.Value)
			}
		}
		// Rows per measurement: 4 overhead configurations, 3 concurrency
		// levels, 2 stalls, 1 day, 2 start-up sizes (short), 2 storms, 3
		// footprint figures, 2 key types' CPU per signature.
		want := map[int]int{1: 4, 2: 3, 3: 2, 4: 1, 5: 2, 6: 2, 7: 3, 8: 2}
		for id, n := range want {
			if seen[id] != n {
				t.Errorf("%s: measurement %d has %d rows, want %d", backend, id, seen[id], n)
			}
		}
	}
}

// TestSDKBaselines checks the raw SDK paths the ratios divide by, against
// both emulators, independently of the backends.
func TestSDKBaselines(t *testing.T) {
	for _, name := range []string{"azure", "gcp"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			c, err := startCloud(ctx, name, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			for _, kt := range []engine.KeyType{engine.ECP256, engine.RSA2048} {
				sig, err := c.sdkKey(ctx, kt)
				if err != nil {
					t.Fatalf("%v: %v", kt, err)
				}
				sign := sig.signFunc()
				c.resetCounts()
				c.setLatency(opSign, 20*time.Millisecond, 0)
				took, err := timed(ctx, sign)
				c.clearLatency()
				if err != nil {
					t.Fatalf("%v: sign: %v", kt, err)
				}
				if took < 20*time.Millisecond {
					t.Errorf("%v: signature took %v despite 20 ms added latency", kt, took)
				}
				if tl := tallyOf(c); tl.sign != 1 {
					t.Errorf("%v: counted %d signatures, want 1 (%v)", kt, tl.sign, tl.byOp)
				}
			}
			if err := c.seedForeign(3); err != nil {
				t.Fatal(err)
			}
		})
	}
}
