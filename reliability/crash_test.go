package reliability

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
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
	before map[string]keymanager.PublicKey
	// answered is the key GenerateKey returned before the kill, if it did.
	answered *keymanager.PublicKey
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
		pk, err := c.p.GenerateKey(c.h.t.Context(), id, keymanager.ECP256)
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
		name: "GenerateKey/during the retirement of the superseded key",
		crash: func(c *crashRun) {
			reached := c.h.v.hold(c.h.t, opRetire, false, holdFor)
			wait := c.generateAsync("x509-CA-A")
			wait()
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
// vault and checks that nothing was lost or leaked: the newest complete
// generation of each key ID is served and signs, one cleanup pass leaves no
// own key that is not in use, and no other server's key was touched.
func TestCrash(t *testing.T) {
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

	c := &crashRun{h: h, rng: rand.New(rand.NewPCG(uint64(seed), 0)), before: map[string]keymanager.PublicKey{}}
	c.p = h.start(crashServer, cp.extra)
	for _, id := range []string{"x509-CA-A", "JWT-Signer-A"} {
		c.before[id] = h.mustGenerate(c.p, id)
	}
	cp.crash(c)
	v.clear(t)

	// Restart on the same vault, with passes due soon.
	p := h.start(crashServer, `cleanup_interval = "1s"`+"\n"+`liveness_interval = "1s"`)
	mine := own(v.keys(t), crashServer)
	want := newest(mine)
	served := h.mustSignAll(p)
	if len(served) != len(want) {
		t.Errorf("after the restart %d keys are served, the vault holds %d key IDs of this server", len(served), len(want))
	}
	for _, pk := range served {
		w, ok := want[pk.ID]
		switch {
		case !ok:
			t.Errorf("serving %s, which the vault holds no generation of", pk.ID)
		case pk.Fingerprint != w.Fingerprint:
			t.Errorf("serving %s %s, want the newest generation %s (%s)", pk.ID, pk.Fingerprint, w.Ref, w.Fingerprint)
		}
	}
	for id, b := range c.before {
		got, ok := want[id]
		if !ok {
			t.Errorf("key %s was lost: the vault holds no generation of it", id)
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
			t.Errorf("GenerateKey answered %s before the crash, the newest generation in the vault is %s", a.Fingerprint, w.Fingerprint)
		}
	}

	// One liveness pass: every key in use was updated within a day of the
	// cloud's time, even when the crash hit the previous keep-alive.
	waitPasses(t, p, livenessDone, 0, 1)
	cloudNow := v.now(t)
	for _, k := range own(v.keys(t), crashServer) {
		if w, ok := want[k.KeyID]; ok && w.Ref == k.Ref && cloudNow.Sub(k.Updated) > keymanager.DefaultKeepAliveAge {
			t.Errorf("key %s (%s) in use was last updated %v before the cloud's time, after a liveness pass", k.KeyID, k.Ref, cloudNow.Sub(k.Updated))
		}
	}

	// One cleanup pass: only the keys in use are left of this server's.
	l := waitPasses(t, p, cleanupDone, 0, 1)
	if ok, _ := l.Fields["ok"].(bool); !ok {
		t.Errorf("the first cleanup pass after the restart failed: %s", l.Raw)
	}
	after := v.keys(t)
	left := own(after, crashServer)
	if len(left) != len(served) {
		t.Errorf("after one cleanup pass the vault holds %d keys of this server, %d are in use: %v", len(left), len(served), refs(left))
	}
	refsAfter := byRef(after)
	if k, ok := refsAfter[foreign.Ref]; !ok || !k.Updated.Equal(foreign.Updated) {
		t.Errorf("the live key %s of %s was touched (present %v)", foreign.Ref, otherServer, ok)
	}
	if stale != nil {
		if _, ok := refsAfter[stale.Ref]; ok {
			t.Errorf("the stale key %s of %s is still there after a cleanup pass", stale.Ref, goneServer)
		}
	}
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
