package simulation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// call is one backend call waiting for the scheduler.
type call struct {
	b        *backend
	task     *task
	op       string
	keyID    string
	effect   func() error
	seq      int
	arrived  time.Time
	deadline time.Time
	effected bool
	result   error // the effect's own error
	err      error // what the caller gets
	resume   chan struct{}
}

// task is a goroutine running engine code for one action: it runs only
// while the scheduler waits for it, and hands control back when it reaches a
// backend call or ends.
type task struct {
	name     string
	inc      *incarnation
	deadline time.Time // the cloud time after which its calls fail (zero: per call only)
	done     bool
}

// sim is one run: the cloud, the processes, the scheduler state and what
// the invariants found. Everything is driven by rng; only one goroutine runs
// at a time, so a seed replays exactly.
type sim struct {
	cfg     config
	rng     *rand.Rand
	cloud   *cloud
	step    int
	seq     int
	ev      chan struct{}
	pending []*call
	running *task
	procs   []*process
	tasks   []*task
	quiet   bool
	trace   []string

	violations []string
	stats      Stats
	creations  map[string][]time.Time // creation times per server ID and key ID
}

// call parks the running task in a backend call until the scheduler
// answers it. A task of a killed process gets an error at once: a dead
// process sends nothing.
func (s *sim) call(b *backend, op, keyID string, effect func() error) error {
	t := s.running
	if b.inc != nil && b.inc.dead {
		return engine.Errorf(codes.Unavailable, "sim: process killed")
	}
	now := s.cloud.now
	if t != nil && !t.deadline.IsZero() && !now.Before(t.deadline) {
		return engine.Errorf(codes.DeadlineExceeded, "sim: %s: the caller's deadline passed", op)
	}
	s.seq++
	c := &call{b: b, task: t, op: op, keyID: keyID, effect: effect, seq: s.seq, arrived: now, deadline: now.Add(s.cfg.budget), resume: make(chan struct{})}
	if t != nil && !t.deadline.IsZero() && t.deadline.Before(c.deadline) {
		c.deadline = t.deadline
	}
	s.pending = append(s.pending, c)
	s.ev <- struct{}{}
	<-c.resume
	return c.err
}

// run starts a task and waits until it parks in a call or ends.
func (s *sim) run(t *task, fn func(ctx context.Context)) {
	s.tasks = append(s.tasks, t)
	prev := s.running
	s.running = t
	go func() {
		fn(context.Background())
		t.done = true
		s.ev <- struct{}{}
	}()
	<-s.ev
	s.running = prev
}

// resume answers c and waits until its task parks again or ends.
func (s *sim) resume(c *call) {
	s.pending = slices.DeleteFunc(s.pending, func(x *call) bool { return x == c })
	prev := s.running
	s.running = c.task
	close(c.resume)
	<-s.ev
	s.running = prev
}

// applyEffect runs c's effect, unless a fault fails it first.
func (s *sim) applyEffect(c *call) {
	c.effected = true
	if !s.quiet && s.rng.Float64() < s.cfg.failRate {
		c.result = engine.Errorf(codes.Unavailable, "sim: %s failed before taking effect", c.op)
		c.err = c.result
		c.effected = false
		return
	}
	c.result = c.effect()
	c.err = c.result
	if c.result == nil && !s.quiet && s.rng.Float64() < s.cfg.lostRate {
		c.err = engine.Errorf(codes.Unavailable, "sim: %s took effect but its answer was lost", c.op)
	}
}

// advance moves c one step: its effect, then its answer.
func (s *sim) advance(c *call) {
	if c.effected || c.err != nil {
		s.tracef("answer %s %s (%s) err=%v", c.op, c.keyID, s.who(c.b), c.err)
		s.resume(c)
		return
	}
	s.applyEffect(c)
	s.tracef("effect %s %s (%s) err=%v", c.op, c.keyID, s.who(c.b), c.result)
	if c.err != nil && !c.effected {
		s.resume(c) // failed at once
	}
}

// timeouts answers the calls whose deadline passed: a call not yet in
// effect may still take effect just before (a slow request), then the
// caller gets DeadlineExceeded.
func (s *sim) timeouts() {
	for _, c := range slices.Clone(s.pending) {
		if s.cloud.now.Before(c.deadline) {
			continue
		}
		if !c.effected && c.err == nil && s.rng.IntN(2) == 0 {
			s.applyEffect(c)
			s.tracef("effect %s %s (%s) err=%v, just before its deadline", c.op, c.keyID, s.who(c.b), c.result)
		}
		c.effected = true
		c.err = engine.Errorf(codes.DeadlineExceeded, "sim: %s: deadline exceeded", c.op)
		s.tracef("timeout %s %s (%s)", c.op, c.keyID, s.who(c.b))
		s.resume(c)
	}
}

func (s *sim) who(b *backend) string {
	if b.inc == nil {
		return "gc"
	}
	return b.inc.name()
}

func (s *sim) tracef(format string, args ...any) {
	if s.cfg.trace {
		s.trace = append(s.trace, fmt.Sprintf("%5d %s ", s.step, s.cloud.now.Format("01-02T15:04:05.000"))+fmt.Sprintf(format, args...))
	}
}

func (s *sim) violate(format string, args ...any) {
	msg := fmt.Sprintf("step %d: ", s.step) + fmt.Sprintf(format, args...)
	s.violations = append(s.violations, msg)
	s.tracef("VIOLATION %s", msg)
}

// noteCreate counts a creation for the hourly bound: max_key_creations_per_hour
// per key ID and process, restarts included. Processes sharing a server ID
// cannot be told apart across restarts (their holders are new at each
// start), so for a shared ID the bound is the sum of theirs.
func (s *sim) noteCreate(b *backend, r *record) {
	s.stats.Creations++
	if b.inc == nil {
		return
	}
	key := r.serverID + "/" + r.keyID
	s.creations[key] = append(s.creations[key], s.cloud.now)
	n := 0
	for _, t := range s.creations[key] {
		if s.cloud.now.Sub(t) < time.Hour {
			n++
		}
	}
	sharers := 0
	for _, p := range s.procs {
		if p.serverID == r.serverID {
			sharers++
		}
	}
	if bound := s.cfg.maxPerHour * sharers; n > bound {
		s.violate("server ID %s created %d generations of %s within an hour (bound %d: %d per process, %d processes)", r.serverID, n, r.keyID, bound, s.cfg.maxPerHour, sharers)
	}
}

// noteLeaseWrite notices a creator's commit taking effect.
func (s *sim) noteLeaseWrite(b *backend, r *record, leases []engine.Lease) {
	if b.inc == nil || r.creator != b.inc {
		return
	}
	for _, l := range leases {
		if l.Holder == b.inc.m.Holder() && !l.Pending {
			r.committed = true
		}
	}
}

// noteRetire checks the first invariant at the moment a retirement takes
// effect: no live process serves the generation.
func (s *sim) noteRetire(b *backend, r *record) {
	s.stats.Retired++
	r.retiredBy, r.retiredAtStep, r.retiredAtCloudT = s.who(b), s.step, s.cloud.now
	for _, p := range s.procs {
		inc := p.cur
		if inc == nil || inc.dead || inc.m == nil {
			continue
		}
		for _, g := range inc.m.Serving() {
			if g.Ref == r.ref {
				s.violate("%s retired %s (%s) while %s serves it", s.who(b), r.ref, r.keyID, inc.name())
			}
		}
	}
}

// noteSignOnRetired: a live process signed with a retired generation.
func (s *sim) noteSignOnRetired(b *backend, ref string) {
	if b.inc == nil || b.inc.dead {
		return
	}
	for _, r := range s.cloud.recs {
		if r.ref == ref && r.retired {
			s.violate("%s signed with %s, retired by %s at step %d", b.inc.name(), ref, r.retiredBy, r.retiredAtStep)
		}
	}
}
