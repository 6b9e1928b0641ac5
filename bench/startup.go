package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// startup measures 5: Configure time and cloud calls through the binary with
// 0, 1,000 and 5,000 foreign keys (another application's keys in the same
// vault or key ring) and 4 own keys. Target: one list pass plus one fetch
// per own key.
func (r *runner) startup(ctx context.Context, c cloud) []Row {
	const serverID = "bench-startup"
	var rows []Row
	fail := func(from int, err error) []Row {
		for _, n := range r.sz.foreign[from:] {
			rows = append(rows, notMeasured(5, startupLabel(n), c.name(), "one list pass + 4 fetches", err))
		}
		return rows
	}
	// The four own keys, created by a first run of the server.
	p, _, err := r.launch(ctx, c, serverID, "")
	if err != nil {
		return fail(0, err)
	}
	for _, id := range []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A", "JWT-Signer-B"} {
		if _, err := p.GenerateKey(ctx, id, engine.ECP256); err != nil {
			p.Close()
			return fail(0, fmt.Errorf("GenerateKey %s: %w", id, err))
		}
	}
	p.Close()

	seeded := 0
	for i, n := range r.sz.foreign {
		if err := c.seedForeign(n - seeded); err != nil {
			return fail(i, err)
		}
		seeded = n
		c.resetCounts()
		p, took, err := r.launch(ctx, c, serverID, "")
		if err != nil {
			return fail(i, err)
		}
		keys, err := p.GetPublicKeys(ctx)
		// Counted before the stop: a clean stop releases the process's
		// leases (a read and a write per key), which is not start-up.
		tl := tallyOf(c)
		p.Close()
		if err != nil {
			return fail(i, err)
		}
		list, what := c.listPass(4)
		want := list + 4
		rows = append(rows, Row{ID: 5, Measurement: startupLabel(n), Backend: c.name(),
			Target:  fmt.Sprintf("≤ %d calls (list pass: %s; + 4 fetches)", want, what),
			Verdict: verdict(tl.management <= want && len(keys) == 4),
			Value: fmt.Sprintf("Configure %v; %d calls (%s); %d keys served; auth %d",
				took.Round(time.Millisecond), tl.management, tl.ops(classManagement), len(keys), tl.auth)})
	}
	return rows
}

func startupLabel(n int) string {
	return fmt.Sprintf("5. Start-up: Configure with %d foreign keys + 4 own keys", n)
}
