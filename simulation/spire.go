package simulation

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// kinds are SPIRE's two CA kinds, each with an A and a B slot.
var kinds = [...]string{"x509-CA", "JWT-Signer"}

func slotKeyID(kind string, slot int) string { return kind + "-" + string(rune('A'+slot)) }

// slots is SPIRE's CA journal for one kind: the key of each slot, which is
// active, and whether the other one is prepared. It survives restarts.
type slots struct {
	fp       [2]string
	active   int
	issued   time.Time // when the active slot was activated (cloud time)
	prepared bool
	busy     bool // a GenerateKey for this kind is in flight
	slot     int  // the slot it prepares
	activate bool // whether that slot is the active one
	retryAt  time.Time
}

// process is one SPIRE server: its server ID (shared with others when the
// seed says so), its clock skew against the cloud, its journal, and the
// incarnation running now.
type process struct {
	idx       int
	serverID  string
	shared    bool
	skew      time.Duration
	journal   map[string]*slots
	cur       *incarnation
	incs      int
	lastFP    map[string]string // the key served under each ID when the last incarnation ended
	last      *incarnation      // the incarnation that ran last
	downUntil time.Time
}

func (p *process) name() string { return fmt.Sprintf("server%d(%s)", p.idx, p.serverID) }

// incarnation is one run of a process: an engine over its view of the cloud.
type incarnation struct {
	p       *process
	n       int
	m       *engine.Manager
	b       *backend
	clock   *procClock
	loading bool
	dead    bool
	stopped bool
	signs   int
	nextRun time.Time // when RunDue, liveness and cleanup are next looked at (local)
	nextKA  time.Time
	nextCl  time.Time
	given   map[string]bool // fingerprints the engine gave SPIRE
	bgBusy  bool
}

func (i *incarnation) name() string { return fmt.Sprintf("%s#%d", i.p.name(), i.n) }

// procClock is a process's local clock: the cloud's, skewed.
type procClock struct {
	s    *sim
	skew time.Duration
}

func (c *procClock) Now() time.Time { return c.s.cloud.now.Add(c.skew) }

// After is never waited on: the simulation runs the passes itself.
func (c *procClock) After(time.Duration) <-chan time.Time { return nil }

// start launches a new incarnation of p and loads it.
func (s *sim) start(p *process) {
	p.incs++
	inc := &incarnation{p: p, n: p.incs, loading: true, given: map[string]bool{}}
	inc.clock = &procClock{s: s, skew: p.skew}
	inc.b = &backend{s: s, inc: inc, serverID: p.serverID}
	m, err := engine.New(engine.Options{
		Backend: inc.b, ServerID: p.serverID, Budget: s.cfg.budget, Clock: inc.clock,
		Schedule: s.cfg.schedule, MaxCreationsPerHour: s.cfg.maxPerHour, Parallelism: 1,
		Holder: fmt.Sprintf("h%d%d", p.idx, inc.n),
	})
	if err != nil {
		panic(err)
	}
	inc.m = m
	p.cur, p.last = inc, inc
	s.tracef("start %s", inc.name())
	t := &task{name: "load", inc: inc, deadline: s.cloud.now.Add(s.cfg.budget)}
	s.run(t, func(ctx context.Context) {
		err := m.Load(ctx)
		if inc.dead {
			return
		}
		inc.loading = false
		if err != nil {
			s.tracef("load %s failed: %v", inc.name(), err)
			p.cur = nil // SPIRE exits; it is restarted later
			p.downUntil = s.cloud.now.Add(10 * time.Second)
			return
		}
		s.afterLoad(inc)
	})
}

// afterLoad is SPIRE's start: it compares its journal with the keys served
// and prepares again any slot whose key is missing or different. It also
// checks that a process alone on its server ID serves what it served before.
func (s *sim) afterLoad(inc *incarnation) {
	p := inc.p
	keys, _ := inc.m.GetPublicKeys(context.Background())
	served := map[string]string{}
	for _, k := range keys {
		served[k.ID] = k.Fingerprint
	}
	if !p.shared && p.lastFP != nil {
		for id, last := range p.lastFP {
			now, ok := served[id]
			if !ok || now == last {
				continue
			}
			if r := s.cloud.byFP[now]; r != nil && r.committed && r.creator != nil && r.creator.p == p && r.creator != inc && !r.creator.given[now] {
				s.stats.AdoptedUnseenCommit++ // killed while its commit was in flight: documented
				continue
			}
			if r := s.cloud.byFP[now]; r != nil && !r.committed && r.pendingLost {
				s.stats.AdoptedLostPending++ // Cloud KMS: the pending mark was rewritten away: documented
				continue
			}
			s.violate("%s serves %s for %s after a restart; it served %s before and SPIRE was given nothing newer", inc.name(), now, id, last)
		}
	}
	for _, kind := range kinds {
		j := p.journal[kind]
		for slot := range 2 {
			if j.fp[slot] != "" && served[slotKeyID(kind, slot)] != j.fp[slot] {
				s.stats.Reprepared++
				j.fp[slot] = ""
				if slot != j.active {
					j.prepared = false
				}
			}
		}
	}
	for _, fp := range served {
		inc.given[fp] = true
	}
}

// digest returns a digest to sign.
func digest(n int) []byte {
	sum := sha256.Sum256([]byte(fmt.Sprint(n)))
	return sum[:]
}
