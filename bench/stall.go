package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// Stall settings of measurement 3.
const (
	stallSignLatency   = 5 * time.Millisecond
	stallCreateLatency = 2 * time.Second
	stallTarget        = 1.5
)

// stall measures 3: p99 SignData latency while a GenerateKey with 2 s added
// create latency runs (through the binary), and while a liveness pass runs
// (liveness_interval = "1s", the emulator clock moved a day so that every
// key is due), both through the binary, each divided by the idle p99 measured just before. Signatures
// carry 5 ms added latency so that network time, not CPU jitter, dominates.
func (r *runner) stall(ctx context.Context, c cloud) []Row {
	return []Row{r.rotationStall(ctx, c), r.livenessStall(ctx, c)}
}

const (
	rotationStallLabel = "3. Rotation stall: SignData p99 during a 2 s GenerateKey / idle p99"
	livenessStallLabel = "3. Liveness stall: SignData p99 during a liveness pass / idle p99"
)

func stallTargetText() string { return fmt.Sprintf("≤ %.1f", stallTarget) }

func (r *runner) rotationStall(ctx context.Context, c cloud) Row {
	fail := func(err error) Row { return notMeasured(3, rotationStallLabel, c.name(), stallTargetText(), err) }
	p, _, err := r.launch(ctx, c, "bench-stall", "")
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	const id = "x509-CA-A"
	sign, err := pluginSigner(ctx, p, id, keymanager.ECP256)
	if err != nil {
		return fail(err)
	}
	c.setLatency(opSign, stallSignLatency, 0)
	defer c.clearLatency()
	if _, err := load(ctx, sign, r.sz.stallSigners, 100*time.Millisecond); err != nil {
		return fail(err)
	}
	idle, err := load(ctx, sign, r.sz.stallSigners, r.sz.stallIdle)
	if err != nil {
		return fail(err)
	}
	c.setLatency(opCreate, stallCreateLatency, 1)
	during, took, err := loadWhile(ctx, sign, r.sz.stallSigners, func(ctx context.Context) error {
		_, err := p.GenerateKey(ctx, id, keymanager.ECP256)
		return err
	})
	if err != nil {
		return fail(err)
	}
	return stallRow(3, rotationStallLabel, c.name(), idle, during, fmt.Sprintf("GenerateKey took %v", took.Round(time.Millisecond)))
}

func (r *runner) livenessStall(ctx context.Context, c cloud) Row {
	fail := func(err error) Row { return notMeasured(3, livenessStallLabel, c.name(), stallTargetText(), err) }
	p, _, err := r.launch(ctx, c, "bench-liveness", `liveness_interval = "1s"`)
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	ids := []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A", "JWT-Signer-B"}
	var sign signFunc
	for i := len(ids) - 1; i >= 0; i-- {
		if sign, err = pluginSigner(ctx, p, ids[i], keymanager.ECP256); err != nil {
			return fail(err)
		}
	}
	c.setLatency(opSign, stallSignLatency, 0)
	defer c.clearLatency()
	if _, err := load(ctx, sign, r.sz.stallSigners, 100*time.Millisecond); err != nil {
		return fail(err)
	}
	idle, err := load(ctx, sign, r.sz.stallSigners, r.sz.stallIdle)
	if err != nil {
		return fail(err)
	}
	// A day later every key is due for a keep-alive. The engine learns the
	// cloud's time from the creation time of the next key it sees.
	c.setLatency(opKeepAlive, r.sz.livenessPerKey, 0)
	c.advance(25 * time.Hour)
	c.resetCounts()
	during, took, err := loadWhile(ctx, sign, r.sz.stallSigners, func(ctx context.Context) error {
		if _, err := p.GenerateKey(ctx, "bench-clock-probe", keymanager.ECP256); err != nil {
			return fmt.Errorf("GenerateKey of the clock probe: %w", err)
		}
		return waitLivenessPass(ctx, c, p, len(ids))
	})
	if err != nil {
		return fail(err)
	}
	return stallRow(3, livenessStallLabel, c.name(), idle, during,
		fmt.Sprintf("window %v incl. %d keep-alive calls at +%v each", took.Round(time.Millisecond), c.opCount(opKeepAlive), r.sz.livenessPerKey))
}

// waitLivenessPass waits until the plugin's liveness pass has kept n keys
// alive and logged its end.
func waitLivenessPass(ctx context.Context, c cloud, p *pluginhost.Plugin, n int) error {
	mark := -1
	for {
		if mark < 0 && c.opCount(opKeepAlive) >= n {
			mark = len(p.Logs())
		}
		if mark >= 0 {
			for _, l := range p.Logs()[mark:] {
				if l.Message == "Liveness pass done" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a liveness pass keeping %d keys alive (saw %d keep-alive calls): %w", n, c.opCount(opKeepAlive), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func stallRow(id int, label, backend string, idle, during loadResult, note string) Row {
	rt := ratio(during.lat.pct(99), idle.lat.pct(99))
	return Row{ID: id, Measurement: label, Backend: backend, Target: stallTargetText(), Verdict: verdict(rt <= stallTarget),
		Value: fmt.Sprintf("×%.2f (p99 %s vs %s idle; %d signatures during; %s)",
			rt, ms(during.lat.pct(99)), ms(idle.lat.pct(99)), during.done, note)}
}

// loadWhile runs n closed-loop signers for as long as work runs, and
// returns their latencies and how long work took.
func loadWhile(ctx context.Context, f signFunc, n int, work func(context.Context) error) (loadResult, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		res loadResult
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	workDone := make(chan struct{})
	go func() {
		res, err := loadUntil(ctx, f, n, workDone)
		done <- result{res, err}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	werr := work(wctx)
	wcancel()
	took := time.Since(start)
	close(workDone)
	lr := <-done
	if werr != nil {
		return lr.res, took, fmt.Errorf("the work measured against: %w", werr)
	}
	return lr.res, took, lr.err
}
