package reliability

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// holdFor is how long a crash point holds the operation it kills the
// process in; the kill lands at a random moment of a window a little longer,
// so that some kills fall just after the operation took effect.
const holdFor = 300 * time.Millisecond

// Server IDs of the crash scenarios.
const (
	crashServer = "server-a"
	otherServer = "server-other" // alive: its keys must never be touched
	goneServer  = "server-gone"  // not updated for 20 days: stale
)

// crashRun is one iteration of a crash point.
type crashRun struct {
	h   *harness
	rng *rand.Rand
	p   *pluginhost.Plugin
	// before is what the first process served before the step.
	before map[string]engine.PublicKey
	// answered is the key GenerateKey returned before the kill, if it did.
	answered *engine.PublicKey
	// restartExtra is plugin_data for the restarted process.
	restartExtra string
}

// killWithin kills the plugin at a random moment within 1.25 × d once
// reached reports that an operation hit its hold.
func (c *crashRun) killWithin(reached func() bool, d time.Duration) {
	t := c.h.t
	t.Helper()
	waitFor(t, "the operation to reach the crash point", reached)
	time.Sleep(time.Duration(c.rng.Int64N(int64(d + d/4))))
	kill(t, c.p)
}

// generateAsync runs GenerateKey for id in the background; the returned
// function waits for its answer (an error once the process is killed).
func (c *crashRun) generateAsync(id string) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The call's own test-scoped context; a killed process answers
		// with an error, which is expected and kept for the scan.
		pk, err := c.p.GenerateKey(c.h.t.Context(), id, engine.ECP256)
		if c.h.record(err) == nil {
			c.answered = &pk
		}
	}()
	return func() { <-done }
}

// crashPoint is a step of the plugin's work at which the process is killed.
type crashPoint struct {
	name string
	// extra is plugin_data for the first process.
	extra string
	// seedStale seeds a key of a server gone for 20 days.
	seedStale bool
	// settled is set when the cloud's clock passed the settle period
	// before the kill: a generation the process superseded may be retired
	// by the first cleanup pass after the restart.
	settled bool
	// crash performs the step and kills the process during it.
	crash func(c *crashRun)
}

var crashPoints = []crashPoint{
	{
		name: "GenerateKey/before the create call",
		crash: func(c *crashRun) {
			reached := c.h.v.hold(c.h.t, opCreate, false, holdFor)
			wait := c.generateAsync("x509-CA-A")
			c.killWithin(reached, holdFor)
			wait()
		},
	},
	{
		name: "GenerateKey/after the create, before the public key and the swap",
		crash: func(c *crashRun) {
			reached := c.h.v.hold(c.h.t, opCreate, true, holdFor)
			wait := c.generateAsync("x509-CA-A")
			c.killWithin(reached, holdFor)
			wait()
		},
	},
	{
		name: "GenerateKey/after the swap",
		crash: func(c *crashRun) {
			wait := c.generateAsync("x509-CA-A")
			wait()
			// Right after the answer: the superseded key may or may not
			// be retired yet.
			time.Sleep(time.Duration(c.rng.Int64N(int64(20 * time.Millisecond))))
			kill(c.h.t, c.p)
		},
	},
	{
		name:    "GenerateKey/during the retirement of the superseded key",
		extra:   `cleanup_interval = "1s"`,
		settled: true,
		crash: func(c *crashRun) {
			t := c.h.t
			reached := c.h.v.hold(t, opRetire, false, holdFor)
			wait := c.generateAsync("x509-CA-A")
			wait()
			// The superseded key is retired once it has settled: the
			// process ends its lease on it, the cloud's clock passes the
			// settle period, and the next cleanup pass retires it.
			waitUnleased(t, c.h, crashServer, c.before["x509-CA-A"].Fingerprint)
			c.h.v.advance(t, settlePast)
			c.killWithin(reached, holdFor)
		},
	},
	{
		name:  "liveness pass/during the keep-alive",
		extra: `liveness_interval = "1s"`,
		crash: func(c *crashRun) {
			t := c.h.t
			reached := c.h.v.hold(t, opKeepAlive, false, holdFor)
			// A day passes in the cloud; a new key shows the plugin the
			// cloud's time, and the keys from before are due for liveness.
			c.h.v.advance(t, 25*time.Hour)
			c.h.mustGenerate(c.p, "JWT-Signer-B")
			c.killWithin(reached, holdFor)
		},
	},
	{
		name:      "cleanup pass/during the listing",
		extra:     `cleanup_interval = "1s"`,
		seedStale: true,
		crash: func(c *crashRun) {
			reached := c.h.v.hold(c.h.t, opList, false, holdFor)
			c.killWithin(reached, holdFor)
		},
	},
	{
		name:      "cleanup pass/during the retirement of a stale key",
		extra:     `cleanup_interval = "1s"`,
		seedStale: true,
		crash: func(c *crashRun) {
			reached := c.h.v.hold(c.h.t, opRetire, false, holdFor)
			c.killWithin(reached, holdFor)
		},
	},
}

// TestCrash kills the plugin with SIGKILL at every step of a rotation and of
// the background passes, at randomized moments, restarts it on the same
// vault and checks that nothing was lost or leaked:
//
//   - the restarted process serves the newest committed generation of each
//     key ID, never one whose creation did not commit (a kill before the
//     commit: the key served before), and the key a GenerateKey returned
//     before the kill (its creation committed before it answered). A kill
//     after the commit took effect but before GenerateKey answered leaves
//     the new generation committed: the restarted process serves it,
//     although SPIRE was never given it (SPIRE prepares again when its
//     journal does not match). On Cloud KMS a kill between the version's
//     creation and the label update that records its pending lease leaves
//     a version with no lease at all, which the rule cannot tell from a key
//     made before leases existed and takes as committed: the restarted
//     process serves it too;
//   - every key it serves signs and is kept alive;
//   - the first cleanup pass retires nothing of this server's that has not
//     settled (the generation superseded before the kill, or left by a
//     creation that never committed), and no other server's live key; it
//     retires the stale key of a server gone for 20 days;
//   - once the cloud's clock has passed the settle period (and the hour a
//     creation that never committed is kept while it is its key ID's
//     newest), cleanup passes leave only what the restarted process serves
//     and what the killed process's leases hold; once it has passed the
//     lease period too (72 h: a killed process never ends its leases), only
//     what the restarted process serves.
func TestCrash(t *testing.T) {
	t.Parallel() // a waiting scenario (doc.go)
	forEachSetup(t, func(t *testing.T, s setup) {
		var runs []subtest
		for _, cp := range crashPoints {
			for i := range suite.crashIterations() {
				runs = append(runs, subtest{fmt.Sprintf("%s/%d", cp.name, i), func(t *testing.T) { runCrash(t, s, cp) }})
			}
		}
		runConcurrently(t, crashConcurrency, runs)
	})
}

// crashConcurrency is how many crash iterations run at once: they mostly
// wait (holds, background passes), so more than the CPUs.
const crashConcurrency = 6

func runCrash(t *testing.T, s setup, cp crashPoint) {
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	h := newHarness(t, s)
	v := h.v
	now := v.now(t)
	foreign := v.seed(t, otherServer, "x509-CA-A", now.Add(-time.Hour), now.Add(-time.Hour))
	var stale *key
	if cp.seedStale {
		k := v.seed(t, goneServer, "x509-CA-A", now.Add(-20*24*time.Hour), now.Add(-20*24*time.Hour))
		stale = &k
	}

	c := &crashRun{h: h, rng: rand.New(rand.NewPCG(uint64(seed), 0)), before: map[string]engine.PublicKey{}}
	c.p = h.start(crashServer, cp.extra)
	for _, id := range []string{"x509-CA-A", "JWT-Signer-A"} {
		c.before[id] = h.mustGenerate(c.p, id)
	}
	cp.crash(c)
	v.clear(t)

	// What the kill left, read before the restart (which records its
	// lease on what it adopts, and so commits it), once the calls the killed
	// process had sent have taken effect: the cloud finishes a request whose
	// client has died (a held creation released by clear, a lease write
	// sent just before the kill).
	mine := own(quietKeys(t, v), crashServer)
	want := newestCommitted(mine)
	// Restart on the same vault, with passes due soon.
	p := h.start(crashServer, passesExtra)
	served := h.mustSignAll(p)
	if len(served) != len(want) {
		t.Errorf("after the restart %d keys are served, the vault holds committed generations of %d key IDs of this server", len(served), len(want))
	}
	for _, pk := range served {
		w, ok := want[pk.ID]
		switch {
		case !ok:
			t.Errorf("serving %s, which the vault holds no committed generation of", pk.ID)
		case pk.Fingerprint != w.Fingerprint:
			t.Errorf("serving %s %s, want the newest committed generation %s (%s)", pk.ID, pk.Fingerprint, w.Ref, w.Fingerprint)
		}
	}
	for id, b := range c.before {
		got, ok := want[id]
		if !ok {
			t.Errorf("key %s was lost: the vault holds no committed generation of it", id)
			continue
		}
		if prev, ok := byFingerprint(mine, b.Fingerprint); got.Fingerprint != b.Fingerprint && ok && !newer(got, prev) {
			t.Errorf("key %s: serving %s instead of %s, and it is not newer", id, got.Fingerprint, b.Fingerprint)
		}
	}
	if a := c.answered; a != nil {
		for _, pk := range served {
			if pk.ID == a.ID && pk.Fingerprint != a.Fingerprint {
				t.Errorf("GenerateKey answered %s before the crash, the restarted plugin serves %s", a.Fingerprint, pk.Fingerprint)
			}
		}
		if w := want[a.ID]; w.Fingerprint != a.Fingerprint {
			t.Errorf("GenerateKey answered %s before the crash, the newest committed generation in the vault is %s", a.Fingerprint, w.Fingerprint)
		}
	}

	// One liveness pass: every key in use was updated within a day of the
	// cloud's time, even when the crash hit the previous keep-alive.
	waitPasses(t, p, livenessDone, 0, 1)
	cloudNow := v.now(t)
	for _, k := range own(v.keys(t), crashServer) {
		if w, ok := want[k.KeyID]; ok && w.Ref == k.Ref && cloudNow.Sub(k.Updated) > engine.DefaultKeepAliveAge {
			t.Errorf("key %s (%s) in use was last updated %v before the cloud's time, after a liveness pass", k.KeyID, k.Ref, cloudNow.Sub(k.Updated))
		}
	}

	// One cleanup pass: nothing of this server's that has not settled is
	// retired, nor another server's live key; the stale key is.
	l := waitPasses(t, p, cleanupDone, 0, 1)
	if ok, _ := l.Fields["ok"].(bool); !ok {
		t.Errorf("the first cleanup pass after the restart failed: %s", l.Raw)
	}
	after := v.keys(t)
	refsAfter := byRef(after)
	for _, k := range mine {
		if _, ok := refsAfter[k.Ref]; !ok && (!cp.settled || want[k.KeyID].Ref == k.Ref) {
			t.Errorf("the first cleanup pass after the restart retired %s %s, before it settled", k.KeyID, k.Ref)
		}
	}
	checkBystanders := func(when string) {
		t.Helper()
		refsNow := byRef(v.keys(t))
		if k, ok := refsNow[foreign.Ref]; !ok || !k.Updated.Equal(foreign.Updated) {
			t.Errorf("%s: the live key %s of %s was touched (present %v)", when, foreign.Ref, otherServer, ok)
		}
		if stale != nil {
			if _, ok := refsNow[stale.Ref]; ok {
				t.Errorf("%s: the stale key %s of %s is still there", when, stale.Ref, goneServer)
			}
		}
	}
	checkBystanders("after one cleanup pass")

	// Past the settle period and the hour a creation that never committed
	// is kept, cleanup passes retire what has settled: what is left besides
	// the keys served, the killed process's leases hold.
	unserved := func() []key {
		var out []key
		for _, k := range own(v.keys(t), crashServer) {
			if w, ok := want[k.KeyID]; !ok || w.Ref != k.Ref {
				out = append(out, k)
			}
		}
		return out
	}
	held := unserved()
	held = slices.DeleteFunc(held, func(k key) bool { return len(committedLeases(k)) == 0 })
	v.advance(t, orphanPast)
	waitVault(t, "what settled to be retired", func() bool {
		now := v.now(t)
		for _, k := range unserved() {
			if len(liveLeases(k, now)) == 0 {
				return false
			}
		}
		return true
	})
	refsNow := byRef(v.keys(t))
	for _, k := range held {
		if _, ok := refsNow[k.Ref]; !ok {
			t.Errorf("%s %s, which the killed process's lease holds, was retired within the lease period", k.KeyID, k.Ref)
		}
	}
	if len(unserved()) == 0 {
		checkBystanders("past the settle period")
		h.mustSignAll(p)
		return // nothing held: the lease period changes nothing
	}
	// Past the lease period, once the keys served were kept alive, and a
	// settle period after those keep-alives (on Cloud KMS they write the
	// record that the versions of a key share): only the keys served are
	// left.
	v.advance(t, leasePast)
	waitVault(t, "the keys served to be kept alive", func() bool {
		now := v.now(t)
		for _, k := range own(v.keys(t), crashServer) {
			if w, ok := want[k.KeyID]; ok && w.Ref == k.Ref && now.Sub(k.Updated) > engine.DefaultKeepAliveAge {
				return false
			}
		}
		return true
	})
	v.advance(t, settlePast)
	waitVault(t, "only the keys served to be left", func() bool { return len(unserved()) == 0 })
	left := own(v.keys(t), crashServer)
	if len(left) != len(served) {
		t.Errorf("past the lease period the vault holds %v of this server, %d keys are in use", refs(left), len(served))
	}
	for _, pk := range served {
		if _, ok := byFingerprint(left, pk.Fingerprint); !ok {
			t.Errorf("the served key %s %s was retired", pk.ID, pk.Fingerprint)
		}
	}
	checkBystanders("past the lease period")
	h.mustSignAll(p)
}

// byFingerprint returns the key with fingerprint fp.
func byFingerprint(keys []key, fp string) (key, bool) {
	for _, k := range keys {
		if k.Fingerprint == fp {
			return k, true
		}
	}
	return key{}, false
}

func refs(keys []key) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.KeyID + "=" + k.Ref
	}
	return out
}

// quietKeys lists the vault's keys once two listings a moment apart agree,
// so that no request of a killed process is still to take effect.
func quietKeys(t *testing.T, v vault) []key {
	t.Helper()
	state := func(ks []key) string {
		var b strings.Builder
		for _, k := range ks {
			fmt.Fprintf(&b, "%s %s %s %v %v\n", k.Ref, k.Fingerprint, k.Updated, k.Leases, k.Meta)
		}
		return b.String()
	}
	prev := state(v.keys(t))
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(300 * time.Millisecond)
		ks := v.keys(t)
		cur := state(ks)
		if cur == prev {
			return ks
		}
		if time.Now().After(deadline) {
			t.Fatal("the vault's keys kept changing after the plugin was killed")
		}
		prev = cur
	}
}
