package reliability

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
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
)

// spireKeyIDs are the key IDs a SPIRE server uses, in slot pairs.
var spireKeyIDs = []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A", "JWT-Signer-B"}

// TestHAMonth runs three servers with different IDs on one vault through a
// month of the cloud's clock, each rotating a CA and a JWT slot every step as
// SPIRE does. server-c stops for 15 days: the others keep its keys while they
// are younger than the stale period, then retire them, and nothing else;
// server-c restarts and rebuilds its keys. Every server signs with every key
// it serves at every step.
func TestHAMonth(t *testing.T) {
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
			rotate(n, slot...)
			for name, p := range running {
				if len(h.mustSignAll(p)) != len(spireKeyIDs) {
					t.Fatalf("%s serves fewer than %d keys at day %d", name, len(spireKeyIDs), day)
				}
			}
			dayEnds := time.Duration(n)*step%(24*time.Hour) == 0
			switch {
			case dayEnds && day == haStopDay:
				// The keys server-c serves when it stops: its superseded
				// generations are its own to retire, and may still be on
				// their way out (retirements run in the background).
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

		// One more pass each: every server is left with its keys in use only.
		waitAllPasses(t, running)
		all := h.v.keys(t)
		for name, p := range running {
			pks := h.mustSignAll(p)
			if mine := own(all, name); len(mine) != len(pks) {
				t.Errorf("%s: after the month the vault holds %v, %d keys are in use", name, refs(mine), len(pks))
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
				if owner != name && (reason != string(keymanager.StateStale) || owner != "server-c") {
					t.Errorf("%s retired a key of %s (reason %s): %s", name, owner, reason, l.Raw)
				}
			}
		}
	})
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
// key_identifier_value: each sees keys with its server ID that it did not
// create, reports them (an error log naming the cause, the conflicts metric)
// and retires none of them.
func TestSharedIdentifier(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		p1 := h.start("shared", haExtra)
		p2 := h.start("shared", haExtra)
		made := map[*pluginhost.Plugin][]keymanager.PublicKey{
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
			if !hasLog(p, "error", "another SPIRE server uses the same key_identifier_value") {
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
// have moved on, the generation neither serves is retired and the two they
// serve are kept.
func TestSharedIdentifierAdoption(t *testing.T) {
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
			pk keymanager.PublicKey
		}{{p2, k1}, {p1, k2}} {
			if err := h.sign(callCtx(t), c.p, c.pk); err != nil {
				t.Errorf("signing with %s after the first rotation: %v", c.pk.Fingerprint, err)
			}
		}

		k3 := h.mustGenerate(p2, "x509-CA-A")
		plugins := map[string]*pluginhost.Plugin{"first": p1, "second": p2}
		waitAllPasses(t, plugins)
		waitAllPasses(t, plugins)
		left := own(h.v.keys(t), "shared")
		for _, pk := range []keymanager.PublicKey{k2, k3} {
			if _, ok := byFingerprint(left, pk.Fingerprint); !ok {
				t.Errorf("the served generation %s was retired", pk.Fingerprint)
			}
		}
		if _, ok := byFingerprint(left, k1.Fingerprint); ok || len(left) != 2 {
			t.Errorf("after both rotated and cleaned up the vault holds %v of the shared ID, want only the 2 served", refs(left))
		}
		for _, c := range []struct {
			p  *pluginhost.Plugin
			pk keymanager.PublicKey
		}{{p1, k2}, {p2, k3}} {
			if err := h.sign(callCtx(t), c.p, c.pk); err != nil {
				t.Errorf("signing with %s after both rotated: %v", c.pk.Fingerprint, err)
			}
		}
	})
}

// TestCleanRestartRetiresAtOnce stops a server cleanly (Deinit, as SPIRE
// does at shutdown) and starts it again: the new process supersedes the key
// the old one served with its first rotation and retires it at once, since
// the old process released its lease when it stopped.
func TestCleanRestartRetiresAtOnce(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		p1 := h.start("restarted", "")
		k1 := h.mustGenerate(p1, "x509-CA-A")
		if err := p1.Close(); err != nil {
			t.Fatalf("stopping the first process: %v", err)
		}
		p2 := h.start("restarted", "")
		k2 := h.mustGenerate(p2, "x509-CA-A")
		waitVault(t, "the superseded key to be retired", func() bool {
			_, ok := byFingerprint(own(h.v.keys(t), "restarted"), k1.Fingerprint)
			return !ok
		})
		if left := own(h.v.keys(t), "restarted"); len(left) != 1 || left[0].Fingerprint != k2.Fingerprint {
			t.Errorf("the vault holds %v of the server, want only the key it serves", refs(left))
		}
	})
}
