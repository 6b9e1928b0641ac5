package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// overheadTarget is the largest plugin/SDK latency ratio allowed at 5 ms.
const overheadTarget = 1.05

// digest is what every signature signs: the size of a SHA-256 digest is
// all that matters to the cloud.
var digest = sha256.Sum256([]byte("kmskeeper bench"))

// overhead measures 1: SignData through pluginhost -> binary -> emulator
// against the same signature made with the SDK directly, for EC P-256 and
// RSA-2048, at 0 and 5 ms added latency. The paths take turns call by call,
// so that drift on the shared machine hits them alike. Four more paths
// decompose the difference: GetPublicKey through the binary (the protocol
// hop alone: served from memory, no cloud call), SignData on the engine in
// process over the same backend (everything but the hop), and SignData
// through the two floor plugins (floorEnv: the raw SDK behind the same
// boundary, without and with the verification every signature gets).
func (r *runner) overhead(ctx context.Context, c cloud) []Row {
	var rows []Row
	fail := func(err error) []Row {
		for _, t := range []engine.KeyType{engine.ECP256, engine.RSA2048} {
			for _, lat := range []time.Duration{0, 5 * time.Millisecond} {
				rows = append(rows, notMeasured(1, overheadLabel(t, lat), c.name(), overheadTargetText(lat), err))
			}
		}
		return rows
	}
	p, _, err := r.launch(ctx, c, "bench-overhead", "")
	if err != nil {
		return fail(err)
	}
	defer p.Close()
	e, err := newEngine(ctx, c, "bench-overhead-engine")
	if err != nil {
		return fail(err)
	}
	defer e.Close()
	floor, err := r.launchFloor(ctx, c, false)
	if err != nil {
		return fail(err)
	}
	defer floor.Close()
	floorV, err := r.launchFloor(ctx, c, true)
	if err != nil {
		return fail(err)
	}
	defer floorV.Close()
	for _, t := range []engine.KeyType{engine.ECP256, engine.RSA2048} {
		id := "x509-CA-" + keySlug(t)
		var paths overheadPaths
		if paths.plugin, err = pluginSigner(ctx, p, id, t); err != nil {
			return fail(err)
		}
		sdk, err := c.sdkKey(ctx, t)
		if err != nil {
			return fail(err)
		}
		paths.sdk = sdk.signFunc()
		if _, err := e.GenerateKey(ctx, id, t); err != nil {
			return fail(fmt.Errorf("in-process GenerateKey %s: %w", id, err))
		}
		paths.engine = func(ctx context.Context, d []byte) error {
			_, _, err := e.SignData(ctx, id, d, crypto.SHA256)
			return err
		}
		paths.hop = func(ctx context.Context, _ []byte) error {
			_, err := p.GetPublicKey(ctx, id)
			return err
		}
		if paths.floor, err = pluginSigner(ctx, floor, id, t); err != nil {
			return fail(err)
		}
		if paths.floorV, err = pluginSigner(ctx, floorV, id, t); err != nil {
			return fail(err)
		}
		for _, lat := range []time.Duration{0, 5 * time.Millisecond} {
			c.setLatency(opSign, lat, 0)
			rows = append(rows, r.overheadRow(ctx, c, t, lat, paths))
		}
		c.clearLatency()
	}
	return rows
}

// overheadPaths are the calls measurement 1 compares.
type overheadPaths struct {
	plugin, sdk signFunc // the ratio
	engine      signFunc // SignData on the engine in process
	hop         signFunc // GetPublicKey through the binary
	// floor and floorV are SignData through the floor plugins (floorEnv):
	// the SDK behind the same boundary, without and with the verification.
	floor, floorV signFunc
}

// pluginSigner creates key id through the plugin and returns a signFunc
// calling SignData on it.
func pluginSigner(ctx context.Context, p *pluginhost.Plugin, id string, t engine.KeyType) (signFunc, error) {
	if _, err := p.GenerateKey(ctx, id, t); err != nil {
		return nil, fmt.Errorf("GenerateKey %s: %w", id, err)
	}
	return func(ctx context.Context, d []byte) error {
		_, _, err := p.SignData(ctx, id, d, crypto.SHA256)
		return err
	}, nil
}

func (r *runner) overheadRow(ctx context.Context, c cloud, t engine.KeyType, lat time.Duration, paths overheadPaths) Row {
	label, target := overheadLabel(t, lat), overheadTargetText(lat)
	funcs := []signFunc{paths.plugin, paths.sdk, paths.engine, paths.hop, paths.floor, paths.floorV}
	got := make([]samples, len(funcs))
	for i := -r.sz.warmup; i < r.sz.overheadN; i++ {
		for k := range funcs {
			j := (k + i + r.sz.warmup) % len(funcs) // each path takes each turn alike
			d, err := timed(ctx, funcs[j])
			if err != nil {
				return notMeasured(1, label, c.name(), target, err)
			}
			if i >= 0 {
				got[j] = append(got[j], d)
			}
		}
	}
	ps, ss, es, hs, fs, vs := got[0], got[1], got[2], got[3], got[4], got[5]
	r50, r99 := ratio(ps.pct(50), ss.pct(50)), ratio(ps.pct(99), ss.pct(99))
	row := Row{ID: 1, Measurement: label, Backend: c.name(), Target: target,
		Value: fmt.Sprintf("p50 ×%.3f (%s vs %s), p99 ×%.3f (%s vs %s); engine in process p50 ×%.3f, p99 ×%.3f; protocol hop (GetPublicKey) p50 %s; floor plugin p50 ×%.3f, p99 ×%.3f; verifying floor p50 ×%.3f, p99 ×%.3f; n=%d",
			r50, ms(ps.pct(50)), ms(ss.pct(50)), r99, ms(ps.pct(99)), ms(ss.pct(99)),
			ratio(es.pct(50), ss.pct(50)), ratio(es.pct(99), ss.pct(99)), ms(hs.pct(50)),
			ratio(fs.pct(50), ss.pct(50)), ratio(fs.pct(99), ss.pct(99)),
			ratio(vs.pct(50), ss.pct(50)), ratio(vs.pct(99), ss.pct(99)), len(ps)),
		Verdict: Info}
	if lat > 0 {
		row.Verdict = verdict(r50 <= overheadTarget && r99 <= overheadTarget)
	}
	return row
}

func overheadLabel(t engine.KeyType, lat time.Duration) string {
	return fmt.Sprintf("1. SignData overhead, %v, +%v latency (plugin/SDK)", t, lat)
}

func overheadTargetText(lat time.Duration) string {
	if lat == 0 {
		return "reported (target applies at 5 ms)"
	}
	return fmt.Sprintf("p50 and p99 ratio ≤ %.2f", overheadTarget)
}

// timed runs one signature and returns its latency.
func timed(ctx context.Context, f signFunc) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	err := f(cctx, digest[:])
	return time.Since(start), err
}
