package reliability

import (
	"fmt"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// The retirement rule (engine.Decide; docs/security.md, "The retirement
// rule") keeps a superseded generation until it has settled: its record
// unwritten, and a newer committed generation present, for the settle
// period, judged on the cloud's clock. A scenario that waits for a
// retirement therefore moves the setup's cloud clock (vault.advance; the
// plugin reads the cloud's time from the Date of every answer) and waits for
// a cleanup pass that began after the move.
const (
	// settlePast moves the cloud's clock past the settle period.
	settlePast = engine.DefaultSettle + time.Minute
	// orphanPast moves it past the hour a generation whose creation never
	// committed is kept while it is its key ID's newest (it carries the
	// creation count a restart reads), and so past the settle period too.
	orphanPast = time.Hour + time.Minute
)

// leasePast moves the cloud's clock past the lease period (the keep-alive
// age plus twice the longest liveness interval, 72 h): a killed process's
// leases count until then.
var leasePast = engine.LeaseTTL(engine.Schedule{}) + time.Minute

// pendingGen reports whether k was left by a creation that never committed:
// its record holds a pending lease on it and no committed one. A starting
// server never adopts it.
func pendingGen(k key) bool {
	found := false
	for _, l := range k.Leases {
		if l.Ref != k.Ref {
			continue
		}
		if !l.Pending {
			return false
		}
		found = true
	}
	return found
}

// liveLeases returns the committed leases on k renewed less than the lease
// period before now (or after it).
func liveLeases(k key, now time.Time) []engine.Lease {
	ttl := engine.LeaseTTL(engine.Schedule{})
	var out []engine.Lease
	for _, l := range k.Leases {
		if l.Ref == k.Ref && !l.Pending && now.Sub(l.Renewed) <= ttl {
			out = append(out, l)
		}
	}
	return out
}

// committedLeases returns the committed leases on k, however old.
func committedLeases(k key) []engine.Lease {
	var out []engine.Lease
	for _, l := range k.Leases {
		if l.Ref == k.Ref && !l.Pending {
			out = append(out, l)
		}
	}
	return out
}

// newestCommitted returns, per key ID, the newest generation whose creation
// committed (not pendingGen), in the engine's order: the one a server
// starting now adopts. A key ID whose only generations never committed has
// none.
func newestCommitted(keys []key) map[string]key {
	var committed []key
	for _, k := range keys {
		if !pendingGen(k) {
			committed = append(committed, k)
		}
	}
	return newest(committed)
}

// advanceAndClean moves the cloud's clock by d and waits until each plugin
// has completed a cleanup pass that began after the move (its listing shows
// the plugin the cloud's new time).
func advanceAndClean(t *testing.T, h *harness, d time.Duration, plugins ...*pluginhost.Plugin) {
	t.Helper()
	h.v.advance(t, d)
	m := make(map[string]*pluginhost.Plugin, len(plugins))
	for i, p := range plugins {
		m[fmt.Sprint(i)] = p
	}
	waitAllPasses(t, m)
}

// waitUnleased waits until serverID's generation with fingerprint fp
// carries no committed lease: every process that served it has ended its
// lease (on superseding it, or at a clean stop). That write is the last to
// its record, so the generation settles from it; a test moves the clock on
// only after it.
func waitUnleased(t *testing.T, h *harness, serverID, fp string) {
	t.Helper()
	waitVault(t, "the leases on "+fp+" to end", func() bool {
		k, ok := byFingerprint(own(h.v.keys(t), serverID), fp)
		return !ok || len(committedLeases(k)) == 0
	})
}

// waitUnleasedUnlessServed is waitUnleased for k unless it is one of
// served.
func waitUnleasedUnlessServed(t *testing.T, h *harness, serverID string, k key, served []engine.PublicKey) {
	t.Helper()
	for _, pk := range served {
		if pk.Fingerprint == k.Fingerprint {
			return
		}
	}
	waitUnleased(t, h, serverID, k.Fingerprint)
}

// mustHaveGen checks that serverID's generation with pk's fingerprint is in
// the vault, and returns it.
func mustHaveGen(t *testing.T, h *harness, serverID string, pk engine.PublicKey, why string) key {
	t.Helper()
	k, ok := byFingerprint(own(h.v.keys(t), serverID), pk.Fingerprint)
	if !ok {
		t.Fatalf("%s %s (%s) is gone from the vault: %s", pk.ID, pk.Fingerprint, serverID, why)
	}
	return k
}

// mustBeGone checks that serverID's generation with pk's fingerprint is no
// longer in the vault.
func mustBeGone(t *testing.T, h *harness, serverID string, pk engine.PublicKey, why string) {
	t.Helper()
	if k, ok := byFingerprint(own(h.v.keys(t), serverID), pk.Fingerprint); ok {
		t.Errorf("%s %s (%s) is still in the vault: %s", pk.ID, k.Ref, serverID, why)
	}
}
