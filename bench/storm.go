package main

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Creation storm settings of measurement 6: SPIRE retries a failed
// preparation every 10 s, so an hour of a failing upstream is 360
// GenerateKey calls on one key ID.
const (
	stormEvery    = 10 * time.Second
	stormAttempts = 360
)

// storm measures 6 twice: in process, with the engine's rate guard on a
// fake clock moved 10 s per attempt (the plugin has no fake time source),
// and through the binary with the hour compressed into a burst, which the
// guard's sliding one-hour window must treat the same way.
func (r *runner) storm(ctx context.Context, c cloud) []Row {
	return []Row{r.stormInProcess(ctx, c), r.stormBinary(ctx, c)}
}

func stormTarget() string {
	return fmt.Sprintf("created ≤ %d (guard default; built-ins create %d)", engine.DefaultMaxCreationsPerHour, stormAttempts)
}

func (r *runner) stormInProcess(ctx context.Context, c cloud) Row {
	const label = "6. Creation storm: GenerateKey every 10 s for a simulated hour (in process)"
	fail := func(err error) Row { return notMeasured(6, label, c.name(), stormTarget(), err) }
	e, err := newEngine(ctx, c, "bench-storm")
	if err != nil {
		return fail(err)
	}
	defer e.Close()
	c.resetCounts()
	created, refused := 0, 0
	for range stormAttempts {
		_, err := e.GenerateKey(ctx, "x509-CA-A", engine.ECP256)
		switch {
		case err == nil:
			created++
		case status.Code(err) == codes.ResourceExhausted:
			refused++
		default:
			return fail(err)
		}
		e.advance(stormEvery)
	}
	e.advance(engine.DefaultSettle) // every superseded key has settled
	if err := e.checkRetired(ctx, created-1); err != nil {
		return fail(err)
	}
	return stormRow(label, c, created, refused)
}

func (r *runner) stormBinary(ctx context.Context, c cloud) Row {
	const label = "6. Creation storm: 360 GenerateKey through the binary (hour compressed)"
	fail := func(err error) Row { return notMeasured(6, label, c.name(), stormTarget(), err) }
	p, _, err := r.launch(ctx, c, "bench-storm-binary", "")
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	c.resetCounts()
	created, refused := 0, 0
	for range stormAttempts {
		_, err := p.GenerateKey(ctx, "x509-CA-A", engine.ECP256)
		switch {
		case err == nil:
			created++
		case status.Code(err) == codes.ResourceExhausted:
			refused++
		default:
			return fail(err)
		}
	}
	return stormRow(label, c, created, refused)
}

func stormRow(label string, c cloud, created, refused int) Row {
	tl := tallyOf(c)
	return Row{ID: 6, Measurement: label, Backend: c.name(), Target: stormTarget(),
		Verdict: verdict(created <= engine.DefaultMaxCreationsPerHour),
		Value: fmt.Sprintf("%d created, %d refused (ResourceExhausted) of %d; cloud calls: %s",
			created, refused, stormAttempts, tl.ops(classManagement))}
}
