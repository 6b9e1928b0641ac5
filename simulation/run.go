package simulation

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Stats counts what one run did, for the long-run figures.
type Stats struct {
	Steps, Creations, Retired, Signatures, SignErrors, Restarts, Kills, GCs int
	// Reprepared counts slots SPIRE prepared again after a restart because
	// the key served was not its journal's (two servers sharing an ID).
	Reprepared int
	// AdoptedUnseenCommit counts restarts that served a generation whose
	// commit took effect while its creator was killed: the one case where a
	// process alone on its ID serves, after a restart, a key SPIRE was not
	// given (SPIRE then prepares that slot again).
	AdoptedUnseenCommit int
	// AdoptedLostPending counts restarts that served a Cloud KMS version
	// whose creation never committed, because a concurrent rewrite of the
	// key's shared labels dropped its pending lease (SPIRE then prepares
	// that slot again).
	AdoptedLostPending int
}

// Add sums s and o.
func (s Stats) Add(o Stats) Stats {
	s.Steps += o.Steps
	s.Creations += o.Creations
	s.Retired += o.Retired
	s.Signatures += o.Signatures
	s.SignErrors += o.SignErrors
	s.Restarts += o.Restarts
	s.Kills += o.Kills
	s.GCs += o.GCs
	s.Reprepared += o.Reprepared
	s.AdoptedUnseenCommit += o.AdoptedUnseenCommit
	s.AdoptedLostPending += o.AdoptedLostPending
	return s
}

// Result is the outcome of one run.
type Result struct {
	Seed       uint64
	Violations []string
	Stats      Stats
	// Trace is the run step by step, when asked for.
	Trace []string
	// Setup describes the processes the seed chose.
	Setup string
}

// Failed reports whether an invariant broke.
func (r Result) Failed() bool { return len(r.Violations) > 0 }

// config is what a seed chooses for a run.
type config struct {
	budget     time.Duration
	schedule   engine.Schedule
	maxPerHour int
	caTTL      time.Duration
	failRate   float64
	lostRate   float64
	chaosSteps int
	trace      bool
}

// Options tune a run; the zero value is the standard run.
type Options struct {
	// Trace records every step in Result.Trace.
	Trace bool
	// Steps is the number of chaotic steps before the quiet phase; zero
	// means 300.
	Steps int
}

// Run runs the schedule seed chooses and checks the invariants after every
// step. The same seed and options always give the same run.
func Run(seed uint64, opts Options) Result {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	cfg := config{
		budget: 25 * time.Second,
		schedule: engine.Schedule{
			LivenessInterval: time.Hour,
			KeepAliveAge:     4 * time.Hour,
			CleanupInterval:  []time.Duration{time.Minute, 30 * time.Minute, 2 * time.Hour}[rng.IntN(3)],
			StaleAfter:       14 * 24 * time.Hour,
		},
		maxPerHour: 2 + rng.IntN(4),
		caTTL:      []time.Duration{20 * time.Minute, 2 * time.Hour, 12 * time.Hour}[rng.IntN(3)],
		failRate:   []float64{0, 0.05, 0.15, 0.3}[rng.IntN(4)],
		lostRate:   []float64{0, 0.05, 0.15}[rng.IntN(3)],
		chaosSteps: opts.Steps,
		trace:      opts.Trace,
	}
	if cfg.chaosSteps <= 0 {
		cfg.chaosSteps = 300
	}
	s := &sim{
		cfg:   cfg,
		rng:   rng,
		cloud: &cloud{now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), byFP: map[string]*record{}, shared: rng.IntN(2) == 0, groups: map[string]*leaseRecord{}},
		ev:    make(chan struct{}),

		creations: map[string][]time.Time{},
	}
	s.setup()
	for _, p := range s.procs {
		s.start(p)
	}
	for s.step = 0; s.step < cfg.chaosSteps; s.step++ {
		s.chaosStep()
		s.stats.Steps++
	}
	s.quietPhase()
	s.stats.Steps = s.step
	setup := make([]string, len(s.procs))
	for i, p := range s.procs {
		setup[i] = fmt.Sprintf("%s skew=%s", p.name(), p.skew)
	}
	return Result{Seed: seed, Violations: s.violations, Stats: s.stats, Trace: s.trace,
		Setup: fmt.Sprintf("%s; %s; ca_ttl=%s cleanup=%s fail=%.2f lost=%.2f max/h=%d", strings.Join(setup, ", "), s.cloud.layout(), cfg.caTTL, cfg.schedule.CleanupInterval, cfg.failRate, cfg.lostRate, cfg.maxPerHour)}
}

// setup chooses the processes: one to three server IDs, one of them shared
// by two or three processes half of the time, each with its own clock skew.
func (s *sim) setup() {
	ids := 1 + s.rng.IntN(3)
	skews := []time.Duration{0, 0, 3 * time.Second, -3 * time.Second, 2 * time.Hour, -2 * time.Hour, 15 * 24 * time.Hour, -15 * 24 * time.Hour}
	for i := range ids {
		n := 1
		if i == 0 && s.rng.IntN(2) == 0 {
			n = 2 + s.rng.IntN(2)
		}
		for range n {
			p := &process{idx: len(s.procs), serverID: fmt.Sprintf("srv%d", i), shared: n > 1,
				skew: skews[s.rng.IntN(len(skews))], journal: map[string]*slots{}}
			for _, k := range kinds {
				p.journal[k] = &slots{}
			}
			s.procs = append(s.procs, p)
		}
	}
}

// action is one thing the scheduler may do next.
type action struct {
	weight int
	name   string
	do     func()
}

func (s *sim) chaosStep() {
	var acts []action
	for _, c := range s.pending {
		acts = append(acts, action{6, "advance", func() { s.advance(c) }})
	}
	acts = append(acts, action{4, "tick", func() { s.tick(s.smallTick()) }})
	acts = append(acts, s.spireActions()...)
	acts = append(acts, s.backgroundActions()...)
	for _, p := range s.procs {
		switch inc := p.cur; {
		case inc == nil && !s.cloud.now.Before(p.downUntil) && !s.exiting(p.last):
			acts = append(acts, action{3, "restart", func() { s.stats.Restarts++; s.start(p) }})
		case inc != nil && !inc.loading && !inc.stopped:
			acts = append(acts, action{1, "kill", func() { s.kill(inc) }})
			acts = append(acts, action{1, "stop", func() { s.cleanStop(inc) }})
		}
	}
	acts = append(acts, action{1, "gc", func() { s.gc() }})
	s.pick(acts)
}

// pick chooses one action by weight.
func (s *sim) pick(acts []action) {
	total := 0
	for _, a := range acts {
		total += a.weight
	}
	n := s.rng.IntN(total)
	for _, a := range acts {
		if n < a.weight {
			a.do()
			return
		}
		n -= a.weight
	}
}

// smallTick draws how far the cloud's clock moves in one step: mostly
// within a call's budget, sometimes minutes or hours.
func (s *sim) smallTick() time.Duration {
	switch r := s.rng.IntN(100); {
	case r < 60:
		return time.Duration(s.rng.IntN(3000)) * time.Millisecond
	case r < 85:
		return time.Duration(s.rng.IntN(120)) * time.Second
	case r < 97:
		return time.Duration(s.rng.IntN(60)) * time.Minute
	default:
		return time.Duration(1+s.rng.IntN(8)) * time.Hour
	}
}

// tick moves the cloud's clock on by d. Calls whose deadline falls within
// are timed out at their deadline, in order: a slow call takes effect (if
// it does) before its deadline, never hours later.
func (s *sim) tick(d time.Duration) {
	target := s.cloud.now.Add(d)
	// A live process runs its due background work within maxStall: the
	// clock does not move past that until it has.
	for _, p := range s.procs {
		inc := p.cur
		if inc == nil || inc.dead || inc.stopped || inc.loading || inc.bgBusy {
			continue
		}
		if due := inc.m.NextDue(); !due.IsZero() {
			limit := due.Add(-inc.clock.skew).Add(maxStall)
			if limit.Before(target) {
				target = maxTime(limit, s.cloud.now)
			}
		}
	}
	for {
		var first *call
		for _, c := range s.pending {
			if !c.deadline.After(target) && (first == nil || c.deadline.Before(first.deadline)) {
				first = c
			}
		}
		if first == nil {
			break
		}
		if first.deadline.After(s.cloud.now) {
			s.cloud.now = first.deadline
		}
		s.timeouts()
	}
	s.cloud.now = target
}

// maxStall bounds how late a live process runs a background task: the
// engine's safety rests on a holder reading its lease back within the settle
// period, so a longer pause of a process is outside what it promises (see
// engine.DefaultSettle).
const maxStall = 10 * time.Minute

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// spireActions are the calls SPIRE makes: preparing and activating slots on
// its CA schedule (retrying a failed preparation after 10 s) and signing.
func (s *sim) spireActions() []action {
	var acts []action
	for _, p := range s.procs {
		inc := p.cur
		if inc == nil || inc.loading || inc.stopped || inc.dead {
			continue
		}
		for _, kind := range kinds {
			j := p.journal[kind]
			if j.busy && j.retryAt.Before(s.cloud.now) {
				// SPIRE gave up on a GenerateKey that is still running
				// in the plugin (its deadline passed) and prepares again:
				// two creations of one key ID overlap.
				acts = append(acts, action{1, "prepare-again", func() { s.prepare(inc, kind, j.slot, j.activate) }})
			}
			if j.busy || s.cloud.now.Before(j.retryAt) {
				continue
			}
			switch {
			case j.fp[j.active] == "":
				acts = append(acts, action{4, "prepare-active", func() { s.prepare(inc, kind, j.active, true) }})
			case !j.prepared && s.cloud.now.Sub(j.issued) >= s.cfg.caTTL/2:
				acts = append(acts, action{4, "prepare-next", func() { s.prepare(inc, kind, 1-j.active, false) }})
			case j.prepared && s.cloud.now.Sub(j.issued) >= s.cfg.caTTL*5/6:
				acts = append(acts, action{4, "activate", func() {
					j.active, j.issued, j.prepared = 1-j.active, s.cloud.now, false
				}})
			}
			if inc.signs < 3 {
				for slot := range 2 {
					// SPIRE signs with the active slot; signing with the
					// other too makes rotations meet signatures in flight.
					w := 1
					if slot == j.active {
						w = 6
					}
					if j.fp[slot] != "" {
						acts = append(acts, action{w, "sign", func() { s.sign(inc, kind, slot) }})
					}
				}
			}
		}
	}
	return acts
}

// prepare is SPIRE's GenerateKey for a slot.
func (s *sim) prepare(inc *incarnation, kind string, slot int, activate bool) {
	j := inc.p.journal[kind]
	j.busy, j.slot, j.activate = true, slot, activate
	j.retryAt = s.cloud.now.Add(30 * time.Second) // SPIRE's own deadline
	id := slotKeyID(kind, slot)
	s.run(&task{name: "generate " + id, inc: inc, deadline: s.cloud.now.Add(s.cfg.budget)}, func(ctx context.Context) {
		pub, err := inc.m.GenerateKey(ctx, id, engine.ECP256)
		if inc.dead || inc.stopped {
			return
		}
		j.busy = false
		if err != nil {
			j.retryAt = s.cloud.now.Add(10 * time.Second)
			return
		}
		inc.given[pub.Fingerprint] = true
		j.fp[slot] = pub.Fingerprint
		if activate {
			j.issued = s.cloud.now
		} else {
			j.prepared = true
		}
		if kind == "x509-CA" {
			// SPIRE signs the new CA certificate with the new key at once.
			s.checkSign(ctx, inc, id)
		}
	})
}

// sign is one SignData with the active slot's key, checked against the
// public key of the fingerprint the engine answered with.
func (s *sim) sign(inc *incarnation, kind string, slot int) {
	id := slotKeyID(kind, slot)
	inc.signs++
	s.run(&task{name: "sign " + id, inc: inc, deadline: s.cloud.now.Add(s.cfg.budget)}, func(ctx context.Context) {
		s.checkSign(ctx, inc, id)
		inc.signs--
	})
}

// checkSign is one SignData, checked.
func (s *sim) checkSign(ctx context.Context, inc *incarnation, id string) {
	{
		d := digest(s.step)
		sig, fp, err := inc.m.SignData(ctx, id, d, crypto.SHA256)
		if inc.dead || inc.stopped {
			return
		}
		s.stats.Signatures++
		if err != nil {
			s.stats.SignErrors++
			return
		}
		r := s.cloud.byFP[fp]
		if r == nil || !ecdsa.VerifyASN1(&r.key.PublicKey, d, sig) {
			s.violate("%s: a signature with %s does not verify under the key of fingerprint %s", inc.name(), id, fp)
		}
		if !inc.given[fp] {
			s.violate("%s: signed %s with a key (%s) the engine never gave SPIRE", inc.name(), id, fp)
		}
	}
}

// backgroundActions run the engine's background work when it is due: the
// tasks (lease read-backs, retirements), the liveness and cleanup passes.
func (s *sim) backgroundActions() []action {
	var acts []action
	for _, p := range s.procs {
		inc := p.cur
		if inc == nil || inc.loading || inc.stopped || inc.dead || inc.bgBusy {
			continue
		}
		now := inc.clock.Now()
		if d := inc.m.NextDue(); !d.IsZero() && !now.Before(d) {
			acts = append(acts, action{4, "tasks", func() {
				s.background(inc, "tasks", func(ctx context.Context) { inc.m.RunDue(ctx) })
			}})
		}
		if !now.Before(inc.nextKA) {
			acts = append(acts, action{3, "liveness", func() {
				inc.nextKA = now.Add(s.cfg.schedule.LivenessInterval)
				s.background(inc, "liveness", func(ctx context.Context) {
					if inc.m.KeepAlive(ctx) != nil {
						inc.nextKA = inc.clock.Now().Add(time.Minute)
					}
				})
			}})
		}
		if !now.Before(inc.nextCl) {
			acts = append(acts, action{3, "cleanup", func() {
				inc.nextCl = now.Add(s.cfg.schedule.CleanupInterval)
				s.background(inc, "cleanup", func(ctx context.Context) { inc.m.Cleanup(ctx, true) })
			}})
		}
	}
	return acts
}

func (s *sim) background(inc *incarnation, name string, fn func(ctx context.Context)) {
	inc.bgBusy = true
	s.run(&task{name: name, inc: inc}, func(ctx context.Context) {
		fn(ctx)
		inc.bgBusy = false
	})
}

// exiting reports whether a stopped incarnation still runs work: a process
// restarts once the previous one has exited.
func (s *sim) exiting(inc *incarnation) bool {
	if inc == nil || inc.dead && !inc.stopped {
		return false
	}
	for _, t := range s.tasks {
		if t.inc == inc && !t.done {
			return true
		}
	}
	return false
}

// kill is kill -9: the incarnation stops at once. Its calls in flight may
// still take effect (they are on the wire); their answers go nowhere.
func (s *sim) kill(inc *incarnation) {
	s.stats.Kills++
	s.tracef("kill %s", inc.name())
	s.endIncarnation(inc)
	inc.dead = true
	for _, c := range slices.Clone(s.pending) {
		if c.b.inc != inc {
			continue
		}
		if !c.effected && c.err == nil && s.rng.IntN(2) == 0 {
			s.applyEffect(c)
		}
		c.effected = true
		c.err = fmt.Errorf("sim: killed")
		s.resume(c)
	}
	inc.p.downUntil = s.cloud.now.Add(time.Duration(s.rng.IntN(120)) * time.Second)
}

// cleanStop is SPIRE's Deinit: the engine releases its leases and stops.
func (s *sim) cleanStop(inc *incarnation) {
	s.tracef("stop %s", inc.name())
	inc.stopped = true
	s.endIncarnation(inc)
	s.run(&task{name: "close", inc: inc}, func(ctx context.Context) {
		inc.m.Close()
		inc.dead = true
	})
	inc.p.downUntil = s.cloud.now.Add(time.Duration(s.rng.IntN(120)) * time.Second)
}

// endIncarnation remembers what the incarnation served, for the restart
// invariant.
func (s *sim) endIncarnation(inc *incarnation) {
	p := inc.p
	keys, _ := inc.m.GetPublicKeys(context.Background())
	p.lastFP = map[string]string{}
	for _, k := range keys {
		p.lastFP[k.ID] = k.Fingerprint
	}
	for _, j := range p.journal {
		j.busy = false
	}
	p.cur = nil
}

// gc is `kmskeeper gc --apply` for a random server ID, run beside the
// servers: list, plan, and retire what a recheck still marks.
func (s *sim) gc() {
	s.stats.GCs++
	serverID := s.procs[s.rng.IntN(len(s.procs))].serverID
	b := &backend{s: s, serverID: serverID}
	skew := []time.Duration{0, time.Hour, -time.Hour, 20 * 24 * time.Hour}[s.rng.IntN(4)]
	s.tracef("gc %s", serverID)
	s.run(&task{name: "gc"}, func(ctx context.Context) {
		gens, err := b.ListGenerations(ctx)
		if err != nil {
			return
		}
		now := engine.CloudNow(b, gens, s.cloud.now.Add(skew))
		f := engine.Facts{ServerID: serverID, Now: now, Schedule: s.cfg.schedule}
		for _, a := range engine.Decide(gens, f) {
			if !a.Retire {
				continue
			}
			checked, err := engine.Recheck(ctx, b, a, gens, f)
			if err != nil || !checked.Retire {
				continue
			}
			b.Retire(ctx, checked.Generation)
		}
	})
}

// quietPhase stops the chaos: no faults, kills, restarts or gc; stopped
// servers start again; SPIRE goes on rotating for a CA period, then the
// engines run on alone for a lease period, two cleanup passes and the settle
// period. Then nothing may be left that no live process serves.
func (s *sim) quietPhase() {
	s.quiet = true
	s.drain()
	for _, p := range s.procs {
		if p.cur == nil {
			s.start(p)
		}
	}
	ttl := engine.LeaseTTL(s.cfg.schedule)
	s.runQuiet(s.cfg.caTTL+time.Hour, true)
	s.runQuiet(ttl+2*s.cfg.schedule.CleanupInterval+engine.DefaultSettle+time.Hour, false)
	s.drain()
	s.checkNoLeak()
}

// runQuiet steps for d of cloud time without chaos: each step runs what is
// due to its end (no faults, every call answers), then moves the clock by up
// to half an hour. SPIRE rotates when rotate is set; it does not sign. The
// last step runs at or after the end, so that what falls due in the last
// half hour (a retirement waiting for its key to settle) has run: a process
// at time t has done what was due by t.
func (s *sim) runQuiet(d time.Duration, rotate bool) {
	end := s.cloud.now.Add(d)
	for {
		var acts []action
		if rotate {
			for _, a := range s.spireActions() {
				if a.name != "sign" {
					acts = append(acts, a)
				}
			}
		}
		acts = append(acts, s.backgroundActions()...)
		for _, a := range acts {
			a.do()
			s.step++
		}
		s.drain()
		if !s.cloud.now.Before(end) {
			return
		}
		s.tick(time.Duration(1+s.rng.IntN(1800)) * time.Second)
		s.step++
	}
}

// drain answers every call in flight, and those they lead to.
func (s *sim) drain() {
	for len(s.pending) > 0 {
		s.advance(s.pending[0])
		s.step++
	}
}

// checkNoLeak: every generation of a server ID with a live process is
// served by a live process.
func (s *sim) checkNoLeak() {
	served := map[string]bool{}
	liveIDs := map[string]bool{}
	for _, p := range s.procs {
		if p.cur == nil || p.cur.dead {
			continue
		}
		liveIDs[p.serverID] = true
		for _, g := range p.cur.m.Serving() {
			served[g.Ref] = true
		}
	}
	for _, r := range s.cloud.recs {
		if !r.retired && liveIDs[r.serverID] && !served[r.ref] {
			s.violate("leak: %s (%s, created %s, updated %s, leases %v) is left although no live process serves it; now %s", r.ref, r.keyID, r.created.Format(time.RFC3339), r.rec.updated.Format(time.RFC3339), r.rec.leases, s.cloud.now.Format(time.RFC3339))
		}
	}
}
