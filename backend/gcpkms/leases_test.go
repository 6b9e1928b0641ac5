package gcpkms

import (
	"fmt"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// TestLeaseLabels reads lease labels, committed and pending, back into
// leases, writes leases into labels and reads them again, and skips every
// malformed value rather than guess.
func TestLeaseLabels(t *testing.T) {
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	renewed := time.UnixMilli(1_800_000_000_123)
	ms := fmt.Sprint(renewed.UnixMilli())
	tests := []struct {
		name  string
		value string
		want  *keymanager.Lease // nil: skipped
	}{
		{"committed", "3-" + ms, &keymanager.Lease{Holder: "h", Ref: key + "/cryptoKeyVersions/3", Renewed: renewed}},
		{"pending", "12-" + ms + "-p", &keymanager.Lease{Holder: "h", Ref: key + "/cryptoKeyVersions/12", Renewed: renewed, Pending: true}},
		{"empty", "", nil},
		{"no time", "3", nil},
		{"no version", "-" + ms, nil},
		{"version zero", "0-" + ms, nil},
		{"leading zero", "03-" + ms, nil},
		{"signed version", "+3-" + ms, nil},
		{"negative time", "3--5", nil},
		{"time zero", "3-0", nil},
		{"letters", "x-y", nil},
		{"other suffix", "3-" + ms + "-q", nil},
		{"double suffix", "3-" + ms + "-p-p", nil},
		{"extra field", "3-" + ms + "-7", nil},
		{"version overflow", "99999999999999999999-" + ms, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := leasesOf(key, map[string]string{labelLeasePrefix + "h": tt.value, "team": "platform"})
			if tt.want == nil {
				if len(got) != 0 {
					t.Fatalf("leasesOf(%q) = %v, want it skipped", tt.value, got)
				}
				return
			}
			if len(got) != 1 || got[0] != *tt.want {
				t.Fatalf("leasesOf(%q) = %v, want %v", tt.value, got, *tt.want)
			}
			// Written back, the lease reads the same.
			labels := map[string]string{}
			setLeases(labels, key, tt.want.Ref, got)
			if v := labels[labelLeasePrefix+"h"]; v != tt.value {
				t.Errorf("setLeases wrote %q, want %q", v, tt.value)
			}
			if again := leasesOf(key, labels); len(again) != 1 || again[0] != *tt.want {
				t.Errorf("round trip = %v, want %v", again, *tt.want)
			}
		})
	}
}

// TestRecentLabel records a creation count for the version just created and
// reads it back for that version only.
func TestRecentLabel(t *testing.T) {
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	v := func(n int) string { return fmt.Sprintf("%s/cryptoKeyVersions/%d", key, n) }
	tests := []struct {
		name    string
		label   string // "" for none
		version string
		want    int
	}{
		{"its version", "4-3", v(4), 3},
		{"another version", "4-3", v(3), 0},
		{"a longer number", "4-3", v(14), 0},
		{"none", "", v(4), 0},
		{"no count", "4", v(4), 0},
		{"count zero", "4-0", v(4), 0},
		{"negative count", "4--3", v(4), 0},
		{"count overflow", "4-99999999999999999999", v(4), 0},
		{"letters", "4-x", v(4), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := map[string]string{}
			if tt.label != "" {
				labels[labelRecent] = tt.label
			}
			if got := recentOf(labels, tt.version); got != tt.want {
				t.Errorf("recentOf(%q, %s) = %d, want %d", tt.label, tt.version, got, tt.want)
			}
		})
	}

	labels := map[string]string{labelRecent: "1-5"}
	setRecent(labels, v(2), 2)
	if labels[labelRecent] != "2-2" || recentOf(labels, v(2)) != 2 || recentOf(labels, v(1)) != 0 {
		t.Errorf("after recording version 2's count: %v", labels)
	}
	setRecent(labels, v(3), 0)
	if _, ok := labels[labelRecent]; ok {
		t.Errorf("a zero count left %s = %q, describing an older version", labelRecent, labels[labelRecent])
	}
}

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
