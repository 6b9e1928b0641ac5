package reliability

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// haExtra gives the HA servers passes every second and room for a month of
// rotations in a few seconds of real time.
const haExtra = "max_key_creations_per_hour = 360\ncleanup_interval = \"1s\"\nliveness_interval = \"1s\"\n"

// The simulated month of TestHAMonth, in days.
const (
	haStopDay    = 5  // server-c stops after this day's rotation
	haAliveDay   = 17 // 12 days later its keys must still be there
	haRestartDay = 20 // 15 days later: gone; server-c restarts
	haLastDay    = 30
	// haQuietDays: every 5 days (the last included) the day's rotation is
	// followed by a quiet stretch past the settle period (quietStretch).
	haQuietDays = 5
)

// spireKeyIDs are the key IDs a SPIRE server uses, in slot pairs.
var spireKeyIDs = []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A", "JWT-Signer-B"}

// TestHAMonth runs three servers with different IDs on one vault through a
// month of the cloud's clock, each rotating a CA and a JWT slot every step as
// SPIRE does. server-c stops for 15 days: the others keep its keys while they
// are younger than the stale period, then retire them, and nothing else;
// server-c restarts and rebuilds its keys. Every server signs with every key
// it serves at every step. What a rotation supersedes is kept while it
// settles; every fifth day, past the settle period, every server holds only
// the keys it serves.
func TestHAMonth(t *testing.T) {
	t.Parallel() // a waiting scenario (doc.go)
	step := 24 * time.Hour
	if suite.long {
		step = 6 * time.Hour
	}
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		names := []string{"server-a", "server-b", "server-c"}
		running := map[string]*pluginhost.Plugin{}
		for _, n := range names {
			running[n] = h.start(n, haExtra)
		}
		rotate := func(n int, ids ...string) {
			var wg sync.WaitGroup
			for name, p := range running {
				for _, id := range ids {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := h.generate(p, id); err != nil {
							t.Errorf("%s: GenerateKey %s at step %d: %v", name, id, n, err)
						}
					}()
				}
			}
			wg.Wait()
		}
		rotate(0, spireKeyIDs...)
		var stoppedKeys []key

		steps := int(haLastDay * 24 * time.Hour / step)
		for n := 1; n <= steps; n++ {
			h.v.advance(t, step)
			day := int(time.Duration(n) * step / (24 * time.Hour))
			slot := []string{"x509-CA-A", "JWT-Signer-A"}
			if n%2 == 1 {
				slot = []string{"x509-CA-B", "JWT-Signer-B"}
			}
			dayEnds := time.Duration(n)*step%(24*time.Hour) == 0
			quiet := dayEnds && day%haQuietDays == 0
			// What each server serves before a rotation followed by a quiet
			// stretch: what the rotation supersedes is kept while it settles.
			before := map[string][]key{}
			if quiet {
				for name, p := range running {
					before[name] = ownServed(t, h, p, name)
				}
			}
			rotate(n, slot...)
			for name, p := range running {
				if len(h.mustSignAll(p)) != len(spireKeyIDs) {
					t.Fatalf("%s serves fewer than %d keys at day %d", name, len(spireKeyIDs), day)
				}
			}
			if quiet {
				quietStretch(t, h, running, before, day)
			}
			switch {
			case dayEnds && day == haStopDay:
				// The keys server-c serves when it stops: the quiet stretch
				// just before retired what it had superseded.
				stoppedKeys = ownServed(t, h, running["server-c"], "server-c")
				if err := running["server-c"].Close(); err != nil {
					t.Logf("stopping server-c: %v", err)
				}
				delete(running, "server-c")
				if len(stoppedKeys) != len(spireKeyIDs) {
					t.Fatalf("server-c served %d keys at its stop, want %d", len(stoppedKeys), len(spireKeyIDs))
				}
			case dayEnds && day == haAliveDay:
				// Every running server has looked at the vault since the
				// clock moved: server-c's keys are kept.
				waitAllPasses(t, running)
				left := byRef(h.v.keys(t))
				for _, k := range stoppedKeys {
					if _, ok := left[k.Ref]; !ok {
						t.Errorf("server-c's key %s (%s) was retired %d days after its stop, before the stale period", k.KeyID, k.Ref, day-haStopDay)
					}
				}
			case dayEnds && day == haRestartDay:
				waitAllPasses(t, running)
				left := byRef(h.v.keys(t))
				for _, k := range stoppedKeys {
					if _, ok := left[k.Ref]; ok {
						t.Errorf("server-c's key %s (%s) is still there %d days after its stop", k.KeyID, k.Ref, day-haStopDay)
					}
				}
				// server-c comes back: nothing of its own is left, so SPIRE
				// prepares every key anew.
				p := h.start("server-c", haExtra)
				if pks, err := p.GetPublicKeys(callCtx(t)); err != nil || len(pks) != 0 {
					t.Errorf("server-c after 15 days away serves %d keys (%v), want none", len(pks), err)
				}
				for _, id := range spireKeyIDs {
					h.mustGenerate(p, id)
				}
				running["server-c"] = p
			}
			// Every running server's keys in use are in the vault.
			vaultRefs := byRef(h.v.keys(t))
			for name, p := range running {
				for _, k := range ownServed(t, h, p, name) {
					if _, ok := vaultRefs[k.Ref]; !ok {
						t.Fatalf("day %d: %s serves %s whose generation %s is gone from the vault", day, name, k.KeyID, k.Ref)
					}
				}
			}
		}

		// Nobody retired another server's key unless it was stale, and only
		// server-c's keys ever were.
		for name, p := range running {
			for _, l := range p.Logs() {
				if l.Message != "Retired key generation" {
					continue
				}
				owner, _ := l.Fields["server_id"].(string)
				reason, _ := l.Fields["reason"].(string)
				if owner != name && (reason != string(engine.StateStale) || owner != "server-c") {
					t.Errorf("%s retired a key of %s (reason %s): %s", name, owner, reason, l.Raw)
				}
			}
		}
		// The month is over. A clean stop releases the leases on every
		// generation a process superseded since its last look at the
		// clock, which on Cloud KMS are paced writes, several seconds'
		// worth after a month in a minute; stopping is not what this test
		// looks at.
		for _, p := range running {
			kill(t, p)
		}
	})
}

// quietStretch is the rest of a day of SPIRE's, when no key rotates: half
// an hour of the cloud's clock passes. What the rotation just before
// superseded (each server served before[name] before it) is kept until
// then, while it settles; once the passes have run past the settle period,
// every running server holds only the keys it serves (within 30 s: a
// cleanup pass runs every second). On Cloud KMS, whose
// versions share their key's record, it takes such a stretch: each day's
// step makes the generations served on the other slot due for a keep-alive,
// which writes the record of the versions they superseded, so those settle
// only when nothing is written for the settle period.
func quietStretch(t *testing.T, h *harness, running map[string]*pluginhost.Plugin, before map[string][]key, day int) {
	t.Helper()
	served := map[string]map[string]key{}
	for name, p := range running {
		served[name] = byRef(ownServed(t, h, p, name))
	}
	// The day's keep-alives are written first (the generations served
	// were each updated within the keep-alive age), and each process has
	// ended its lease on what it superseded, which it does once the rule,
	// read again, finds it settling: from then on their records are not
	// written, and they settle.
	var left map[string]key
	waitVault(t, "the keep-alives and the leases' ends", func() bool {
		all := h.v.keys(t)
		left = byRef(all)
		now := h.v.now(t)
		for name := range running {
			for _, k := range own(all, name) {
				_, isServed := served[name][k.Ref]
				if isServed && now.Sub(k.Updated) > engine.DefaultKeepAliveAge || !isServed && len(committedLeases(k)) > 0 {
					return false
				}
			}
		}
		return true
	})
	for name := range running {
		for _, k := range before[name] {
			if _, ok := served[name][k.Ref]; ok {
				continue
			}
			if _, ok := left[k.Ref]; !ok {
				t.Errorf("day %d: %s's generation %s (%s), superseded by the day's rotation, was retired before it settled", day, name, k.Ref, k.KeyID)
			}
		}
	}
	h.v.advance(t, settlePast)
	onlyServed := func() bool {
		all := h.v.keys(t)
		for name := range running {
			if len(own(all, name)) != len(served[name]) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(30 * time.Second)
	for !onlyServed() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	all := h.v.keys(t)
	for name, p := range running {
		if mine := own(all, name); len(mine) != len(served[name]) {
			t.Errorf("day %d: past the settle period the vault holds %v of %s, %d keys are in use", day, refs(mine), name, len(served[name]))
		}
		if pks := h.mustSignAll(p); len(pks) != len(served[name]) {
			t.Errorf("day %d: %s serves %d keys, %d before", day, name, len(pks), len(served[name]))
		}
	}
}

// ownServed returns the vault's generations p serves (matched by
// fingerprint) for serverID.
func ownServed(t *testing.T, h *harness, p *pluginhost.Plugin, serverID string) []key {
	t.Helper()
	pks, err := p.GetPublicKeys(callCtx(t))
	if err != nil {
		t.Fatalf("GetPublicKeys of %s: %v", serverID, h.record(err))
	}
	byFP := map[string]key{}
	for _, k := range own(h.v.keys(t), serverID) {
		byFP[k.Fingerprint] = k
	}
	var out []key
	for _, pk := range pks {
		k, ok := byFP[pk.Fingerprint]
		if !ok {
			t.Fatalf("%s serves %s %s, which is not in the vault", serverID, pk.ID, pk.Fingerprint)
		}
		out = append(out, k)
	}
	return out
}

// waitAllPasses waits until each plugin completes a cleanup pass that
// started after this call (two ends of passes from now).
func waitAllPasses(t *testing.T, plugins map[string]*pluginhost.Plugin) {
	t.Helper()
	var wg sync.WaitGroup
	for _, p := range plugins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			waitPassesNoFatal(t, p, cleanupDone, countLogs(p, cleanupDone), 2)
		}()
	}
	wg.Wait()
}

// waitPassesNoFatal is waitPasses for other goroutines than the test's.
func waitPassesNoFatal(t *testing.T, p *pluginhost.Plugin, msg string, after, n int) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	seen := 0
	if _, err := p.WaitLog(ctx, func(l pluginhost.LogLine) bool {
		if l.Message == msg {
			seen++
		}
		return seen >= after+n
	}); err != nil {
		t.Errorf("waiting for %d more %q lines: %v", n, msg, err)
	}
}

// TestSharedIdentifier starts two processes wrongly given the same
// key_identifier_value together: each sees keys with its server ID that the
// other created later, reports them (an error log naming the cause, the
// conflicts metric) and retires none of them.
func TestSharedIdentifier(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		p1 := h.start("shared", haExtra)
		p2 := h.start("shared", haExtra)
		// The processes' clocks may differ by up to 5 minutes, so a lease is
		// taken for another process's only when written more than that after
		// the reader started: the keys are made ten minutes (of the cloud's
		// clock) after both started.
		h.v.advance(t, 10*time.Minute)
		made := map[*pluginhost.Plugin][]engine.PublicKey{
			p1: {h.mustGenerate(p1, "x509-CA-A")},
			p2: {h.mustGenerate(p2, "JWT-Signer-A"), h.mustGenerate(p2, "x509-CA-B")},
		}
		plugins := map[string]*pluginhost.Plugin{"first": p1, "second": p2}
		waitAllPasses(t, plugins)
		waitAllPasses(t, plugins)

		if got := own(h.v.keys(t), "shared"); len(got) != 3 {
			t.Errorf("the vault holds %v of the shared ID, want the 3 keys created", refs(got))
		}
		for name, p := range plugins {
			for _, pk := range made[p] {
				if err := h.sign(callCtx(t), p, pk); err != nil {
					t.Errorf("%s process: signing with its own %s: %v", name, pk.ID, err)
				}
			}
			if !hasLog(p, "error", "Another process is serving keys with this server's ID") {
				t.Errorf("%s process logged no conflict error", name)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			_, err := p.WaitMetric(ctx, func(m pluginhost.Metric) bool { return m.Name() == "kmskeeper.keys.conflicts" })
			cancel()
			if err != nil {
				t.Errorf("%s process reported no kmskeeper.keys.conflicts metric: %v", name, err)
			}
			for _, l := range p.Logs() {
				if l.Message == "Retired key generation" {
					t.Errorf("%s process retired a key: %s", name, l.Raw)
				}
			}
		}
	})
}

// hasLog reports whether p logged a line at level whose message contains s.
func hasLog(p *pluginhost.Plugin, level, s string) bool {
	for _, l := range p.Logs() {
		if l.Level == level && strings.Contains(l.Message, s) {
			return true
		}
	}
	return false
}

// TestSharedIdentifierAdoption starts a second process with the identifier
// of a running one, ten minutes later on the cloud's clock: it adopts the
// first one's key, as a restarted server would. Neither process retires the
// generation the other still serves when it rotates; the first reports the
// second with a clear error; both keep signing throughout; and once both
// have moved on, the generation neither serves is kept while it settles and
// retired once the cloud's clock has passed the settle period, and the two
// they serve are kept.
func TestSharedIdentifierAdoption(t *testing.T) {
	t.Parallel() // a waiting scenario (doc.go)
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		p1 := h.start("shared", haExtra)
		k1 := h.mustGenerate(p1, "x509-CA-A")
		// A key another server makes ten minutes later shows the second
		// process the cloud's time.
		h.v.advance(t, 10*time.Minute)
		h.v.seed(t, otherServer, "x509-CA-A", h.v.now(t), h.v.now(t))
		p2 := h.start("shared", haExtra)
		if served := h.mustSignAll(p2); len(served) != 1 || served[0].Fingerprint != k1.Fingerprint {
			t.Fatalf("the second process serves %v, want the adopted %s", served, k1.Fingerprint)
		}

		k2 := h.mustGenerate(p1, "x509-CA-A")
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		_, err := p1.WaitLog(ctx, func(l pluginhost.LogLine) bool {
			return l.Level == "error" && strings.Contains(l.Message, "Another process is serving keys with this server's ID")
		})
		cancel()
		if err != nil {
			t.Errorf("the first process did not report the second: %v", err)
		}
		waitAllPasses(t, map[string]*pluginhost.Plugin{"first": p1, "second": p2})
		if _, ok := byFingerprint(own(h.v.keys(t), "shared"), k1.Fingerprint); !ok {
			t.Fatalf("the generation the second process serves was retired when the first rotated")
		}
		for _, c := range []struct {
			p  *pluginhost.Plugin
			pk engine.PublicKey
		}{{p2, k1}, {p1, k2}} {
			if err := h.sign(callCtx(t), c.p, c.pk); err != nil {
				t.Errorf("signing with %s after the first rotation: %v", c.pk.Fingerprint, err)
			}
		}

		k3 := h.mustGenerate(p2, "x509-CA-A")
		plugins := map[string]*pluginhost.Plugin{"first": p1, "second": p2}
		waitAllPasses(t, plugins)
		waitAllPasses(t, plugins)
		// Neither serves k1 now, but it has not settled: it is kept.
		mustHaveGen(t, h, "shared", k1, "retired before it settled, as soon as both processes had moved on")
		signEach(t, h, "after both rotated", p1, k2, p2, k3)

		// Past the settle period, the generation neither serves is retired
		// by a cleanup pass: each process ended its own lease on k1 when it
		// superseded it (docs/security.md, "Serving leases"), so nothing
		// holds it. The two they serve are kept.
		advanceAndClean(t, h, settlePast, p1, p2)
		checkShared := func(when string) bool {
			t.Helper()
			left := own(h.v.keys(t), "shared")
			for _, pk := range []engine.PublicKey{k2, k3} {
				if _, ok := byFingerprint(left, pk.Fingerprint); !ok {
					t.Errorf("the served generation %s was retired", pk.Fingerprint)
				}
			}
			signEach(t, h, when, p1, k2, p2, k3)
			k, ok := byFingerprint(left, k1.Fingerprint)
			if ok {
				t.Errorf("%s the vault still holds k1 (%s), which neither process serves; its record holds the leases %+v", when, k.Ref, k.Leases)
			}
			if len(left) != 2 {
				t.Errorf("%s the vault holds %v of the shared ID, want only the 2 served", when, refs(left))
			}
			return !ok
		}
		if !checkShared("after both rotated and the clock passed the settle period") {
			// Whatever kept it, it must not outlive the lease period (a
			// lease not renewed ends) and a settle period after it (Cloud
			// KMS shares one record between k1 and the served versions,
			// which the keep-alives write). The clock moves a day and a
			// half at a time, so that each process keeps the key it serves
			// alive within the lease period, as a running process does.
			for range 2 {
				advanceAndClean(t, h, 36*time.Hour+30*time.Minute, p1, p2)
			}
			advanceAndClean(t, h, settlePast, p1, p2)
			checkShared("past the lease period,")
		}
	})
}

// signEach signs with each (plugin, key) pair of pairs and verifies.
func signEach(t *testing.T, h *harness, when string, pairs ...any) {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		p, pk := pairs[i].(*pluginhost.Plugin), pairs[i+1].(engine.PublicKey)
		if err := h.sign(callCtx(t), p, pk); err != nil {
			t.Errorf("signing with %s %s %s: %v", pk.ID, pk.Fingerprint, when, err)
		}
	}
}

// TestCleanRestartRetiresOnceSettled stops a server cleanly (Deinit, as
// SPIRE does at shutdown) and starts it again: the old process ended its
// lease on the key it served when it stopped, and the new process, which
// adopted that key, ends its own when its first rotation supersedes it. The
// superseded key is kept while it settles and retired by a cleanup pass once
// the cloud's clock has passed the settle period, not the 72 h lease period
// a killed process's lease would hold it for (TestCrash).
func TestCleanRestartRetiresOnceSettled(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		p1 := h.start("restarted", "")
		k1 := h.mustGenerate(p1, "x509-CA-A")
		if err := p1.Close(); err != nil {
			t.Fatalf("stopping the first process: %v", err)
		}
		if l := committedLeases(mustHaveGen(t, h, "restarted", k1, "")); len(l) != 0 {
			t.Errorf("after a clean stop the key it served still carries the leases %+v", l)
		}
		p2 := h.start("restarted", passesExtra)
		if got := mustGetPublicKey(t, h, p2, "x509-CA-A"); got.Fingerprint != k1.Fingerprint {
			t.Fatalf("the restarted process serves %s, want the key served before the stop %s", got.Fingerprint, k1.Fingerprint)
		}
		k2 := h.mustGenerate(p2, "x509-CA-A")
		waitUnleased(t, h, "restarted", k1.Fingerprint)
		waitPasses(t, p2, cleanupDone, countLogs(p2, cleanupDone), 2)
		mustHaveGen(t, h, "restarted", k1, "retired before it settled")
		servesExactly(t, h, p2, k2)

		advanceAndClean(t, h, settlePast, p2)
		if left := own(h.v.keys(t), "restarted"); len(left) != 1 || left[0].Fingerprint != k2.Fingerprint {
			t.Errorf("past the settle period the vault holds %v of the server, want only the key it serves", refs(left))
		}
		servesExactly(t, h, p2, k2)
	})
}
