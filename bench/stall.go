package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
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
	sign, err := pluginSigner(ctx, p, id, engine.ECP256)
	if err != nil {
		return fail(err)
	}
	c.setLatency(opSign, stallSignLatency, 0)
	defer c.clearLatency()
	if _, err := load(ctx, sign, r.sz.stallSigners, 100*time.Millisecond); err != nil {
		return fail(err)
	}
	var rounds []stallRound
	for range r.sz.stallRounds {
		idle, err := load(ctx, sign, r.sz.stallSigners, r.sz.stallIdle)
		if err != nil {
			return fail(err)
		}
		c.setLatency(opCreate, stallCreateLatency, 1)
		during, took, err := loadWhile(ctx, sign, r.sz.stallSigners, func(ctx context.Context) error {
			_, err := p.GenerateKey(ctx, id, engine.ECP256)
			return err
		})
		c.clearLatency()
		c.setLatency(opSign, stallSignLatency, 0)
		if err != nil {
			return fail(err)
		}
		rounds = append(rounds, stallRound{idle, during, fmt.Sprintf("GenerateKey %v", took.Round(time.Millisecond))})
	}
	return stallRow(3, rotationStallLabel, c.name(), rounds)
}

func (r *runner) livenessStall(ctx context.Context, c cloud) Row {
	fail := func(err error) Row {
		r.progress("%s: liveness stall not measured: %v", c.name(), err)
		return notMeasured(3, livenessStallLabel, c.name(), stallTargetText(), err)
	}
	p, _, err := r.launch(ctx, c, "bench-liveness", `liveness_interval = "1s"`)
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	ids := []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A", "JWT-Signer-B"}
	var sign signFunc
	for i := len(ids) - 1; i >= 0; i-- {
		if sign, err = pluginSigner(ctx, p, ids[i], engine.ECP256); err != nil {
			return fail(err)
		}
	}
	c.setLatency(opSign, stallSignLatency, 0)
	defer c.clearLatency()
	if _, err := load(ctx, sign, r.sz.stallSigners, 100*time.Millisecond); err != nil {
		return fail(err)
	}
	var rounds []stallRound
	for i := range r.sz.stallRounds {
		idle, err := load(ctx, sign, r.sz.stallSigners, r.sz.stallIdle)
		if err != nil {
			return fail(err)
		}
		// A day later every key is due for a keep-alive. The engine learns
		// the cloud's time from the creation time of the next key it sees.
		c.setLatency(opKeepAlive, r.sz.livenessPerKey, 0)
		c.advance(25 * time.Hour)
		c.resetCounts()
		during, took, err := loadWhile(ctx, sign, r.sz.stallSigners, func(ctx context.Context) error {
			probe := fmt.Sprintf("bench-clock-probe-%d", i)
			if _, err := p.GenerateKey(ctx, probe, engine.ECP256); err != nil {
				return fmt.Errorf("GenerateKey of the clock probe: %w", err)
			}
			return waitLivenessPass(ctx, c, p, len(ids))
		})
		c.setLatency(opKeepAlive, 0, 0)
		if err != nil {
			return fail(err)
		}
		rounds = append(rounds, stallRound{idle, during, fmt.Sprintf("window %v, %d keep-alive writes", took.Round(time.Millisecond), c.opCount(opKeepAlive))})
	}
	return stallRow(3, livenessStallLabel, c.name(), rounds)
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
			var warns []string
			for _, l := range p.Logs() {
				if l.Level == "warn" || l.Level == "error" || strings.Contains(l.Message, "Liveness") {
					warns = append(warns, fmt.Sprintf("%s %s %v", l.Level, l.Message, l.Fields["error"]))
				}
			}
			warns = warns[max(0, len(warns)-3):]
			return fmt.Errorf("waiting for a liveness pass keeping %d keys alive (saw %d keep-alive writes; calls %v; plugin said %q): %w",
				n, c.opCount(opKeepAlive), c.counts(), warns, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stallRound is one idle sample and one sample during the work.
type stallRound struct {
	idle, during loadResult
	note         string
}

func (s stallRound) ratio() float64 { return ratio(s.during.lat.pct(99), s.idle.lat.pct(99)) }

// stallRow reports the median of the rounds' ratios: one p99 of a few
// seconds of samples on a shared machine is noisy, and a real stall (signing
// blocked for the whole create) would show in every round.
func stallRow(id int, label, backend string, rounds []stallRound) Row {
	sorted := slices.Clone(rounds)
	slices.SortFunc(sorted, func(a, b stallRound) int { return cmp.Compare(a.ratio(), b.ratio()) })
	med := sorted[len(sorted)/2]
	var each []string
	for _, r := range rounds {
		each = append(each, fmt.Sprintf("×%.2f (p99 %s vs %s idle, %d signatures during, %s)",
			r.ratio(), ms(r.during.lat.pct(99)), ms(r.idle.lat.pct(99)), r.during.done, r.note))
	}
	return Row{ID: id, Measurement: label, Backend: backend, Target: stallTargetText(), Verdict: verdict(med.ratio() <= stallTarget),
		Value: fmt.Sprintf("median ×%.2f of %d rounds: %s", med.ratio(), len(rounds), strings.Join(each, "; "))}
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
