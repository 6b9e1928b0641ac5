package main

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// builtinManagementPerDay is the built-in plugins' steady-state management
// calls per server-day for 4 keys (../shared/reference/
// spire-builtin-keymanagers.md, section 1e); the target is half of it.
var builtinManagementPerDay = map[string]int{"azure": 40, "gcp": 30}

// serverDay measures 4: the cloud calls of one simulated SPIRE server-day
// for 4 keys. The engine runs in process over the real backend against the
// emulator, with a fake clock moved together with the emulator's, and the
// passes are driven at their default schedule (liveness every 6 h, cleanup
// every 24 h) instead of waiting: the plugin's scheduler uses the real clock.
//
// The day follows SPIRE's CA manager with the default 24 h ca_ttl: the four
// slots exist at dawn; the B slots of the X.509 CA and the JWT key are
// prepared (GenerateKey) at 06:00 and the A slots at 18:00 (4 GenerateKey);
// the health check signs once a minute (1,440 SignData).
func (r *runner) serverDay(ctx context.Context, c cloud) []Row {
	const label = "4. Cloud calls per server-day, 4 keys (in process, clock moved)"
	target := fmt.Sprintf("management ≤ %d (half the built-in ≈%d)", builtinManagementPerDay[c.name()]/2, builtinManagementPerDay[c.name()])
	fail := func(err error) []Row { return []Row{notMeasured(4, label, c.name(), target, err)} }

	e, err := newEngine(ctx, c, "bench-day")
	if err != nil {
		return fail(err)
	}
	defer e.Close()
	ids := []string{"x509-CA-A", "JWT-Signer-A", "x509-CA-B", "JWT-Signer-B"}
	for _, id := range ids {
		if _, err := e.GenerateKey(ctx, id, engine.ECP256); err != nil {
			return fail(fmt.Errorf("GenerateKey %s: %w", id, err))
		}
	}
	c.resetCounts()

	const step = time.Minute
	var signs, rotations int
	active := "x509-CA-A"
	for t := step; t <= 24*time.Hour; t += step {
		e.advance(step)
		var prepare []string
		switch t {
		case 6 * time.Hour:
			prepare = ids[2:]
		case 18 * time.Hour:
			prepare = ids[:2]
		}
		for _, id := range prepare {
			if _, err := e.GenerateKey(ctx, id, engine.ECP256); err != nil {
				return fail(fmt.Errorf("GenerateKey %s at %v: %w", id, t, err))
			}
			rotations++
		}
		// The background tasks run as they fall due: the superseded
		// keys are retired once settled (30 min after the rotation).
		e.RunDue(ctx)
		if t == 8*time.Hour {
			active = "x509-CA-B" // activated two hours after preparation
		}
		if t%engine.DefaultLivenessInterval == 0 {
			if err := e.KeepAlive(ctx); err != nil {
				return fail(fmt.Errorf("liveness pass at %v: %w", t, err))
			}
		}
		if t%engine.DefaultCleanupInterval == 0 {
			if _, err := e.Cleanup(ctx, true); err != nil {
				return fail(fmt.Errorf("cleanup pass at %v: %w", t, err))
			}
		}
		if t%r.sz.healthEvery == 0 {
			if _, _, err := e.SignData(ctx, active, digest[:], crypto.SHA256); err != nil {
				return fail(fmt.Errorf("health-check signature at %v: %w", t, err))
			}
			signs++
		}
	}
	if err := e.checkRetired(ctx, rotations); err != nil {
		return fail(err)
	}
	tl := tallyOf(c)
	return []Row{{ID: 4, Measurement: label, Backend: c.name(), Target: target,
		Verdict: verdict(tl.management <= builtinManagementPerDay[c.name()]/2),
		Value: fmt.Sprintf("management %d (%s); SignData %d for %d health checks; auth %d",
			tl.management, tl.ops(classManagement), tl.sign, signs, tl.auth)}}
}
