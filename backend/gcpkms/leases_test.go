package gcpkms

import (
	"fmt"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// TestSetLeases records leases in a key's labels: a holder's label moves
// with it to the new version, other versions' leases stay, the oldest go
// beyond MaxLeases or beyond 64 labels, and malformed labels are ignored.
// (The leases given for a version replace those recorded on it.)
func TestSetLeases(t *testing.T) {
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	v := func(n int) string { return fmt.Sprintf("%s/cryptoKeyVersions/%d", key, n) }
	now := time.UnixMilli(1_800_000_000_000)
	labels := map[string]string{
		labelLeasePrefix + "aaaa": "1-" + fmt.Sprint(now.Add(-time.Hour).UnixMilli()),
		labelLeasePrefix + "bbbb": "1-" + fmt.Sprint(now.Add(-2*time.Hour).UnixMilli()),
		labelLeasePrefix + "bad":  "x-y",
		"team":                    "platform",
	}
	setLeases(labels, key, v(2), []keymanager.Lease{{Holder: "aaaa", Ref: v(2), Renewed: now}})
	got := leasesOf(key, labels)
	want := []keymanager.Lease{{Holder: "aaaa", Ref: v(2), Renewed: now}, {Holder: "bbbb", Ref: v(1), Renewed: now.Add(-2 * time.Hour)}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("leases = %v, want %v", got, want)
	}
	if labels["team"] != "platform" {
		t.Error("a label set by others was dropped")
	}

	// Beyond MaxLeases, the oldest go.
	var many []keymanager.Lease
	for i := range keymanager.MaxLeases + 2 {
		many = append(many, keymanager.Lease{Holder: fmt.Sprintf("h%d", i), Ref: v(3), Renewed: now.Add(time.Duration(i) * time.Minute)})
	}
	setLeases(labels, key, v(3), many)
	kept := leasesOf(key, labels)
	if len(kept) != keymanager.MaxLeases {
		t.Errorf("%d leases kept, want %d", len(kept), keymanager.MaxLeases)
	}
	for _, l := range kept {
		if l.Holder == "h0" || l.Holder == "bbbb" {
			t.Errorf("the old lease of %s was kept over newer ones", l.Holder)
		}
	}

	// A key whose labels are full keeps the newest lease rather than fail.
	full := map[string]string{}
	for i := range maxLabels - 1 {
		full[fmt.Sprintf("l%d", i)] = "v"
	}
	full[labelLeasePrefix+"old"] = "1-" + fmt.Sprint(now.Add(-time.Hour).UnixMilli())
	setLeases(full, key, v(1), []keymanager.Lease{{Holder: "old", Ref: v(1), Renewed: now.Add(-time.Hour)}, {Holder: "new", Ref: v(1), Renewed: now}})
	if len(full) > maxLabels {
		t.Errorf("%d labels, more than Cloud KMS's %d", len(full), maxLabels)
	}
	if _, ok := full[labelLeasePrefix+"new"]; !ok {
		t.Error("the newest lease was dropped to fit")
	}
}
