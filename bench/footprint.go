package main

import (
	"context"
	"fmt"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// footprint measures 7: the plugin process's peak RSS (VmHWM) idle, after
// Configure and four keys, and after 64 concurrent signers; and its CPU time
// per SignData (utime+stime over the signatures of the loaded run).
func (r *runner) footprint(ctx context.Context, c cloud) []Row {
	labels := []string{
		"7. Plugin peak RSS, idle (4 keys)",
		"7. Plugin peak RSS, 64 concurrent signers",
		"7. Plugin CPU time per SignData",
	}
	fail := func(err error) []Row {
		rows := make([]Row, len(labels))
		for i, l := range labels {
			rows[i] = notMeasured(7, l, c.name(), "reported", err)
		}
		return rows
	}
	p, _, err := r.launch(ctx, c, "bench-footprint", "")
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	var sign signFunc
	for _, id := range []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A", "JWT-Signer-B"} {
		if sign, err = pluginSigner(ctx, p, id, engine.ECP256); err != nil {
			return fail(err)
		}
	}
	if _, err := load(ctx, sign, 1, 50*time.Millisecond); err != nil {
		return fail(err)
	}
	pid := p.PID()
	idle, err := procStatus(pid, "VmHWM")
	if err != nil {
		return fail(err)
	}
	c.setLatency(opSign, concurrencyLatency, 0)
	defer c.clearLatency()
	cpu0, err := procCPU(pid, r.tick)
	if err != nil {
		return fail(err)
	}
	res, err := load(ctx, sign, 64, r.sz.concurrency)
	if err != nil {
		return fail(err)
	}
	cpu1, err := procCPU(pid, r.tick)
	if err != nil {
		return fail(err)
	}
	loaded, err := procStatus(pid, "VmHWM")
	if err != nil {
		return fail(err)
	}
	perSign := (cpu1 - cpu0) / time.Duration(max(res.done, 1))
	return []Row{
		{ID: 7, Measurement: labels[0], Backend: c.name(), Value: mib(idle), Target: "reported", Verdict: Info},
		{ID: 7, Measurement: labels[1], Backend: c.name(), Value: mib(loaded), Target: "reported", Verdict: Info},
		{ID: 7, Measurement: labels[2], Backend: c.name(), Target: "reported", Verdict: Info,
			Value: fmt.Sprintf("%.0f µs (%v CPU over %d signatures, tick %v)", float64(perSign)/float64(time.Microsecond), cpu1-cpu0, res.done, r.tick)},
	}
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
