package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// Options says what Run measures.
type Options struct {
	// Backends are the clouds to measure ("azure", "gcp").
	Backends []string
	// Short uses tiny sample sizes: every row is produced, the figures are
	// not meaningful. CI runs it so the harness cannot rot.
	Short bool
	// Only, when not empty, limits the run to these measurement numbers.
	Only map[int]bool
	// ProfileDir, when set, runs a profiling build of the plugin that writes
	// a CPU profile per process there.
	ProfileDir string
	// Binary is the plugin to measure; empty builds cmd/kmskeeper.
	Binary string
	// Race builds the plugin with the race detector (tests under -race).
	Race bool
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

// sizes are the sample sizes of a run.
type sizes struct {
	overheadN      int           // signatures per path and configuration (1)
	warmup         int           // unmeasured signatures before each series
	concurrency    time.Duration // length of each concurrency run (2, 7)
	stallIdle      time.Duration // idle sampling before a stall (3)
	stallSigners   int           // concurrent signers while stalling (3)
	stallRounds    int           // idle/during rounds per stall (3)
	healthEvery    time.Duration // simulated health-check period (4)
	foreign        []int         // foreign keys at start-up (5)
	livenessPerKey time.Duration // added latency per keep-alive call (3)
}

func sizesFor(short bool) sizes {
	if short {
		return sizes{overheadN: 8, warmup: 2, concurrency: 300 * time.Millisecond, stallIdle: 300 * time.Millisecond,
			stallSigners: 2, stallRounds: 1, healthEvery: time.Hour, foreign: []int{0, 30}, livenessPerKey: 100 * time.Millisecond}
	}
	return sizes{overheadN: 400, warmup: 20, concurrency: 3 * time.Second, stallIdle: 2 * time.Second,
		stallSigners: 4, stallRounds: 3, healthEvery: time.Minute, foreign: []int{0, 1000, 5000}, livenessPerKey: 500 * time.Millisecond}
}

// runner holds what every measurement of a run shares.
type runner struct {
	Options
	sz         sizes
	binary     string
	profileDir string
	tick       time.Duration
	dir        string
}

// Run measures opts.Backends and returns the table's rows. An error means
// the harness itself could not run (no binary, no emulator); a measurement
// that fails becomes a "not measured" row.
func Run(ctx context.Context, opts Options) ([]Row, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	dir, err := os.MkdirTemp("", "kmskeeper-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r := &runner{Options: opts, sz: sizesFor(opts.Short), dir: dir, tick: clockTick(ctx)}
	if opts.ProfileDir != "" {
		if r.profileDir, err = filepath.Abs(opts.ProfileDir); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(r.profileDir, 0o755); err != nil {
			return nil, err
		}
	}
	r.binary = opts.Binary
	if r.binary == "" {
		r.progress("building the plugin binary")
		if r.binary, err = r.build(ctx); err != nil {
			return nil, err
		}
	}
	var rows []Row
	for _, name := range opts.Backends {
		brows, err := r.backend(ctx, name)
		if err != nil {
			return nil, err
		}
		rows = append(rows, brows...)
	}
	return rows, nil
}

func (r *runner) build(ctx context.Context) (string, error) {
	if r.profileDir != "" {
		return buildProfiling(ctx, r.dir, r.Race)
	}
	return pluginhost.Build(ctx, pluginhost.BuildOptions{Dir: r.dir, Race: r.Race})
}

// measurementTimeout bounds one measurement on one backend.
const measurementTimeout = 5 * time.Minute

// measurement is one numbered measurement of issue 8.
type measurement struct {
	id  int
	run func(ctx context.Context, c cloud) []Row
}

// backend runs every selected measurement against one cloud's emulator.
func (r *runner) backend(ctx context.Context, name string) ([]Row, error) {
	c, err := startCloud(ctx, name, r.dir)
	if err != nil {
		return nil, err
	}
	defer c.close()
	var rows []Row
	for _, m := range []measurement{
		{7, r.footprint}, {1, r.overhead}, {2, r.concurrency}, {3, r.stall},
		{4, r.serverDay}, {5, r.startup}, {6, r.storm}, {8, r.cpuPerSign},
	} {
		if len(r.Only) > 0 && !r.Only[m.id] {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.progress("%s: measurement %d", name, m.id)
		c.clearLatency()
		// A hung call must not hang the run: each measurement gets a bound
		// far above what it needs.
		mctx, cancel := context.WithTimeout(ctx, measurementTimeout)
		rows = append(rows, m.run(mctx, c)...)
		cancel()
	}
	sortRows(rows)
	return rows, nil
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.Progress, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
