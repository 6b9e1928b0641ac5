package azurekv

import (
	"fmt"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// TestLeaseTags checks the spire-leases tag: leases round-trip, leases on
// another key and malformed entries are left out, and a key whose tags are
// full keeps its own tags, the configured ones and the leases before tags
// others set.
func TestLeaseTags(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_123)
	const ref = "spire-key-01a2299f-7655-72b3-9270-00df541b7a96-x509-CA-A"
	leases := []keymanager.Lease{
		{Holder: "bbbb", Ref: ref, Renewed: now.Add(-time.Hour)},
		{Holder: "aaaa", Ref: ref, Renewed: now},
		{Holder: "cccc", Ref: "spire-key-other", Renewed: now},
	}
	v := encodeLeases(leases, ref)
	if want := fmt.Sprintf("bbbb:%d;aaaa:%d", now.Add(-time.Hour).UnixMilli(), now.UnixMilli()); v != want {
		t.Errorf("encoded %q, want %q", v, want)
	}
	got := decodeLeases(map[string]*string{tagLeases: ptr(v + ";bad;x:y;:5")}, ref)
	if want := leases[:2]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("decoded %v, want %v", got, want)
	}

	b := &Backend{trustDomain: "example.org", serverID: "s", tags: map[string]string{"team": "platform"}}
	carried := map[string]string{"team": "old", tagLeases: "stale"}
	for i := range maxTags {
		carried[fmt.Sprintf("other%02d", i)] = "v"
	}
	tags := b.leaseTags(keymanager.Generation{KeyID: "x509-CA-A", Ref: ref, Leases: leases, Labels: carried})
	if len(tags) > maxTags {
		t.Errorf("%d tags, more than Key Vault's %d", len(tags), maxTags)
	}
	for k, want := range map[string]string{tagTrustDomain: "example.org", tagServerID: "s", "team": "platform", tagLeases: v} {
		if got := tagValue(tags, k); got != want {
			t.Errorf("tag %s = %q, want %q", k, got, want)
		}
	}
	if tagValue(tags, "other00") != "v" {
		t.Error("tags others set were dropped although they fit")
	}
}
