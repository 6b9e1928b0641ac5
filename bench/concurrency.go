package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Concurrency settings of measurement 2.
const (
	concurrencyLatency = 20 * time.Millisecond
	concurrencyTarget  = 0.80 // share of the ideal at 64 signers (issue 8)
	// concurrencySDKTarget is the plugin's throughput at 64 signers as a
	// share of the raw SDK's in the same run (issue 17).
	concurrencySDKTarget = 0.95
)

var concurrencyLevels = []int{1, 8, 64}

// concurrency measures 2: throughput of 1, 8 and 64 concurrent signers at
// 20 ms added latency as a share of the ideal (signers / latency), through
// the plugin and, for scale, through the SDK directly and through the two
// floor plugins (floorEnv) in the same run.
func (r *runner) concurrency(ctx context.Context, c cloud) []Row {
	var rows []Row
	fail := func(err error) []Row {
		for _, n := range concurrencyLevels {
			rows = append(rows, notMeasured(2, concurrencyLabel(n), c.name(), concurrencyTargetText(n), err))
		}
		return rows
	}
	p, _, err := r.launch(ctx, c, "bench-concurrency", "")
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	plugin, err := pluginSigner(ctx, p, "x509-CA-A", engine.ECP256)
	if err != nil {
		return fail(err)
	}
	sdkSig, err := c.sdkKey(ctx, engine.ECP256)
	if err != nil {
		return fail(err)
	}
	sdk := sdkSig.signFunc()
	var floors [2]signFunc
	for i, verify := range []bool{false, true} {
		fp, err := r.launchFloor(ctx, c, verify)
		if err != nil {
			return fail(err)
		}
		defer fp.Close()
		if floors[i], err = pluginSigner(ctx, fp, "x509-CA-A", engine.ECP256); err != nil {
			return fail(err)
		}
	}
	// Warm every path (connections, tokens) before the clock starts.
	for _, f := range []signFunc{plugin, sdk, floors[0], floors[1]} {
		if _, err := load(ctx, f, 8, 100*time.Millisecond); err != nil {
			return fail(err)
		}
	}
	c.setLatency(opSign, concurrencyLatency, 0)
	defer c.clearLatency()
	for _, n := range concurrencyLevels {
		ideal := float64(n) / concurrencyLatency.Seconds()
		busy0 := readCPUBusy()
		pres, err := load(ctx, plugin, n, r.sz.concurrency)
		if err != nil {
			rows = append(rows, notMeasured(2, concurrencyLabel(n), c.name(), concurrencyTargetText(n), err))
			continue
		}
		busy := busy0.until(readCPUBusy())
		sres, err := load(ctx, sdk, n, r.sz.concurrency)
		var fres [2]loadResult
		for i, f := range floors {
			if err == nil {
				fres[i], err = load(ctx, f, n, r.sz.concurrency)
			}
		}
		if err != nil {
			rows = append(rows, notMeasured(2, concurrencyLabel(n), c.name(), concurrencyTargetText(n), err))
			continue
		}
		share, sdkShare := pres.rate()/ideal, sres.rate()/ideal
		row := Row{ID: 2, Measurement: concurrencyLabel(n), Backend: c.name(), Target: concurrencyTargetText(n),
			Value: fmt.Sprintf("%.0f%% of ideal (%.0f/s of %.0f/s, p99 %s); raw SDK %.0f%% (p99 %s); plugin/SDK throughput %.2f (floor plugin/SDK %.2f, verifying floor/SDK %.2f); machine CPU busy %s",
				100*share, pres.rate(), ideal, ms(pres.lat.pct(99)), 100*sdkShare, ms(sres.lat.pct(99)), ratio2(pres.rate(), sres.rate()),
				ratio2(fres[0].rate(), sres.rate()), ratio2(fres[1].rate(), sres.rate()), busy),
			Verdict: Info}
		if n == 64 {
			row.Verdict = verdict(share >= concurrencyTarget && ratio2(pres.rate(), sres.rate()) >= concurrencySDKTarget)
		}
		rows = append(rows, row)
	}
	return rows
}

func concurrencyLabel(n int) string {
	return fmt.Sprintf("2. Throughput, %d concurrent signers, +%v latency", n, concurrencyLatency)
}

func concurrencyTargetText(n int) string {
	if n == 64 {
		return fmt.Sprintf("≥ %.0f%% of ideal, plugin/SDK ≥ %.2f", 100*concurrencyTarget, concurrencySDKTarget)
	}
	return "reported (target applies at 64)"
}

// loadResult is what a closed-loop load run achieved.
type loadResult struct {
	done    int
	elapsed time.Duration
	lat     samples
}

func (l loadResult) rate() float64 { return float64(l.done) / l.elapsed.Seconds() }

// load runs n closed-loop signers for d and returns how many signatures
// completed. The first error stops the run and is returned.
func load(ctx context.Context, f signFunc, n int, d time.Duration) (loadResult, error) {
	deadline := time.Now().Add(d)
	return loadCond(ctx, f, n, func() bool { return !time.Now().Before(deadline) })
}

// loadUntil is load until end is closed.
func loadUntil(ctx context.Context, f signFunc, n int, end <-chan struct{}) (loadResult, error) {
	return loadCond(ctx, f, n, func() bool {
		select {
		case <-end:
			return true
		default:
			return false
		}
	})
}

// loadCond runs n closed-loop signers until finished reports true. A
// signature started before then counts, and so does the time it takes.
func loadCond(ctx context.Context, f signFunc, n int, finished func() bool) (loadResult, error) {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lat      samples
		firstErr error
		stop     atomic.Bool
	)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine samples
			for !stop.Load() && !finished() {
				took, err := timed(ctx, f)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					stop.Store(true)
					return
				}
				mine = append(mine, took)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res := loadResult{done: len(lat), elapsed: time.Since(start), lat: lat}
	if firstErr != nil {
		return res, fmt.Errorf("signing under load: %w", firstErr)
	}
	return res, nil
}
