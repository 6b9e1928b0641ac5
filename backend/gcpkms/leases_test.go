package gcpkms

import (
	"cmp"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestLeaseLabels reads lease labels of one to three entries, committed and
// pending, back into leases (one per entry), writes the leases into labels
// version by version and reads them again, and skips every malformed entry
// rather than guess.
func TestLeaseLabels(t *testing.T) {
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	v := func(n int) string { return fmt.Sprintf("%s/cryptoKeyVersions/%d", key, n) }
	t1, t2, t3 := time.UnixMilli(1_800_000_000_123), time.UnixMilli(1_800_000_050_000), time.UnixMilli(1_800_000_099_999)
	ms := func(t time.Time) string { return fmt.Sprint(t.UnixMilli()) }
	tests := []struct {
		name  string
		value string
		want  []engine.Lease // nil: skipped
		// written is the value writing want back gives; "" for value.
		written string
	}{
		{"committed", "3-" + ms(t1), []engine.Lease{{Holder: "h", Ref: v(3), Renewed: t1}}, ""},
		{"pending", "12-" + ms(t1) + "-p", []engine.Lease{{Holder: "h", Ref: v(12), Renewed: t1, Pending: true}}, ""},
		{"served and created", "1-" + ms(t2) + "_2-" + ms(t1) + "-p", []engine.Lease{
			{Holder: "h", Ref: v(1), Renewed: t2},
			{Holder: "h", Ref: v(2), Renewed: t1, Pending: true},
		}, ""},
		{"three", "1-" + ms(t1) + "_2-" + ms(t2) + "_3-" + ms(t3) + "-p", []engine.Lease{
			{Holder: "h", Ref: v(1), Renewed: t1},
			{Holder: "h", Ref: v(2), Renewed: t2},
			{Holder: "h", Ref: v(3), Renewed: t3, Pending: true},
		}, ""},
		{"three pending", "9-" + ms(t1) + "-p_10-" + ms(t2) + "-p_11-" + ms(t3) + "-p", []engine.Lease{
			{Holder: "h", Ref: v(9), Renewed: t1, Pending: true},
			{Holder: "h", Ref: v(10), Renewed: t2, Pending: true},
			{Holder: "h", Ref: v(11), Renewed: t3, Pending: true},
		}, ""},
		{"widest that fits three", "9997-" + ms(t1) + "-p_9998-" + ms(t2) + "-p_9999-" + ms(t3) + "-p", []engine.Lease{
			{Holder: "h", Ref: v(9997), Renewed: t1, Pending: true},
			{Holder: "h", Ref: v(9998), Renewed: t2, Pending: true},
			{Holder: "h", Ref: v(9999), Renewed: t3, Pending: true},
		}, ""},
		{"out of order", "2-" + ms(t1) + "-p_1-" + ms(t2), []engine.Lease{
			{Holder: "h", Ref: v(1), Renewed: t2},
			{Holder: "h", Ref: v(2), Renewed: t1, Pending: true},
		}, "1-" + ms(t2) + "_2-" + ms(t1) + "-p"},
		{"a malformed entry among good ones", "1-" + ms(t1) + "_x-y_2-" + ms(t2), []engine.Lease{
			{Holder: "h", Ref: v(1), Renewed: t1},
			{Holder: "h", Ref: v(2), Renewed: t2},
		}, "1-" + ms(t1) + "_2-" + ms(t2)},
		{"an empty entry", "1-" + ms(t1) + "__2-" + ms(t2) + "_", []engine.Lease{
			{Holder: "h", Ref: v(1), Renewed: t1},
			{Holder: "h", Ref: v(2), Renewed: t2},
		}, "1-" + ms(t1) + "_2-" + ms(t2)},
		{"a version twice: the first wins", "4-" + ms(t1) + "-p_4-" + ms(t2), []engine.Lease{
			{Holder: "h", Ref: v(4), Renewed: t1, Pending: true},
		}, "4-" + ms(t1) + "-p"},
		{"empty", "", nil, ""},
		{"separators only", "__", nil, ""},
		{"no time", "3", nil, ""},
		{"no version", "-" + ms(t1), nil, ""},
		{"version zero", "0-" + ms(t1), nil, ""},
		{"leading zero", "03-" + ms(t1), nil, ""},
		{"signed version", "+3-" + ms(t1), nil, ""},
		{"negative time", "3--5", nil, ""},
		{"time zero", "3-0", nil, ""},
		{"letters", "x-y", nil, ""},
		{"other suffix", "3-" + ms(t1) + "-q", nil, ""},
		{"double suffix", "3-" + ms(t1) + "-p-p", nil, ""},
		{"extra field", "3-" + ms(t1) + "-7", nil, ""},
		{"another separator", "1-" + ms(t1) + ";2-" + ms(t2), nil, ""},
		{"version overflow", "99999999999999999999-" + ms(t1), nil, ""},
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
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("leasesOf(%q) = %v, want %v", tt.value, got, tt.want)
			}
			// Written back version by version, the leases read the same.
			labels := map[string]string{}
			for _, l := range got {
				setLeases(labels, key, l.Ref, []engine.Lease{l})
			}
			want := cmp.Or(tt.written, tt.value)
			if v := labels[labelLeasePrefix+"h"]; v != want {
				t.Errorf("setLeases wrote %q, want %q", v, want)
			}
			if again := leasesOf(key, labels); !reflect.DeepEqual(again, tt.want) {
				t.Errorf("round trip = %v, want %v", again, tt.want)
			}
		})
	}
}

// TestLeaseLabelLimits checks the limits a lease label's length sets: with
// 13-digit times, three pending entries fit up to 4-digit versions (62
// characters), and beyond that the lowest versions other than the one
// written go until the value fits.
func TestLeaseLabelLimits(t *testing.T) {
	if fullVersionDigits != 4 {
		t.Errorf("fullVersionDigits = %d, want 4 ((63-2)/3-16)", fullVersionDigits)
	}
	const ms = 1_800_000_000_123
	widest := []leaseEntry{{9997, ms, true}, {9998, ms, true}, {9999, ms, true}}
	if v := encodeEntries(widest, 9999); len(v) != 62 || len(parseEntries(v)) != 3 {
		t.Errorf("three pending 4-digit entries: %q (%d characters), want all three in 62", v, len(v))
	}
	tests := []struct {
		name    string
		entries []leaseEntry
		keep    uint64
		want    string
	}{
		{"three committed 5-digit", []leaseEntry{{10001, ms, false}, {10002, ms, false}, {10003, ms, false}}, 10003,
			"10001-1800000000123_10002-1800000000123_10003-1800000000123"},
		{"three pending 5-digit", []leaseEntry{{10001, ms, true}, {10002, ms, true}, {10003, ms, true}}, 10003,
			"10002-1800000000123-p_10003-1800000000123-p"},
		{"the written version is kept though lowest", []leaseEntry{{10001, ms, true}, {10002, ms, true}, {10003, ms, true}}, 10001,
			"10001-1800000000123-p_10003-1800000000123-p"},
		{"15-digit versions: two fit", []leaseEntry{{100000000000001, ms, true}, {100000000000002, ms, true}, {100000000000003, ms, true}}, 100000000000002,
			"100000000000002-1800000000123-p_100000000000003-1800000000123-p"},
		{"the longest entry fits alone", []leaseEntry{{1<<63 - 2, 1<<63 - 1, true}, {1<<63 - 1, 1<<63 - 1, true}}, 1<<63 - 1,
			"9223372036854775807-9223372036854775807-p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := encodeEntries(tt.entries, tt.keep)
			if got != tt.want || len(got) > maxLabelValLen {
				t.Errorf("encodeEntries = %q (%d characters), want %q", got, len(got), tt.want)
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

// TestSetLeases records leases on one version in a key's labels, as a
// creation (pending), a keep-alive and a release write them: a holder's
// entries for other versions stay, up to three (its lowest other versions
// go), and so do other holders' entries for other versions, while the
// leases given for the version replace those recorded on it.
func TestSetLeases(t *testing.T) {
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	v := func(n int) string { return fmt.Sprintf("%s/cryptoKeyVersions/%d", key, n) }
	base := time.UnixMilli(1_800_000_000_000)
	at := func(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }
	// e is a label entry on version n written at minute m, pending if p.
	e := func(n, m int, p bool) string {
		s := fmt.Sprintf("%d-%d", n, at(m).UnixMilli())
		if p {
			s += "-p"
		}
		return s
	}
	join := func(entries ...string) string { return strings.Join(entries, "_") }
	h, o := labelLeasePrefix+"holder", labelLeasePrefix+"other"
	tests := []struct {
		name    string
		labels  map[string]string
		version int
		leases  []engine.Lease
		want    map[string]string // the lease labels after
	}{
		{
			name:    "(a) a creation records v2 pending next to the served v1",
			labels:  map[string]string{h: e(1, 0, false)},
			version: 2,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(2), Renewed: at(1), Pending: true}},
			want:    map[string]string{h: join(e(1, 0, false), e(2, 1, true))},
		},
		{
			name:    "(b) a keep-alive of v1 keeps the v2 pending entry",
			labels:  map[string]string{h: join(e(1, 0, false), e(2, 1, true))},
			version: 1,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(1), Renewed: at(2)}},
			want:    map[string]string{h: join(e(1, 2, false), e(2, 1, true))},
		},
		{
			name:    "(c) the commit of v2 keeps v1",
			labels:  map[string]string{h: join(e(1, 2, false), e(2, 1, true))},
			version: 2,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(2), Renewed: at(3)}},
			want:    map[string]string{h: join(e(1, 2, false), e(2, 3, false))},
		},
		{
			name:    "(d) a 4th version drops the holder's lowest other version",
			labels:  map[string]string{h: join(e(1, 0, false), e(2, 1, false), e(3, 2, true))},
			version: 4,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(4), Renewed: at(3), Pending: true}},
			want:    map[string]string{h: join(e(2, 1, false), e(3, 2, true), e(4, 3, true))},
		},
		{
			name:    "(d) writing the lowest version drops the next lowest",
			labels:  map[string]string{h: join(e(2, 1, false), e(3, 2, true), e(4, 3, true))},
			version: 1,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(1), Renewed: at(4)}},
			want:    map[string]string{h: join(e(1, 4, false), e(3, 2, true), e(4, 3, true))},
		},
		{
			name:    "(e) another holder's entries are untouched",
			labels:  map[string]string{h: e(1, 0, false), o: join(e(1, 1, false), e(2, 2, true), e(3, 3, true))},
			version: 2,
			leases: []engine.Lease{
				{Holder: "other", Ref: v(2), Renewed: at(2), Pending: true},
				{Holder: "holder", Ref: v(2), Renewed: at(4), Pending: true},
			},
			want: map[string]string{h: join(e(1, 0, false), e(2, 4, true)), o: join(e(1, 1, false), e(2, 2, true), e(3, 3, true))},
		},
		{
			name:    "(e) another holder without an entry for the version is untouched",
			labels:  map[string]string{h: e(1, 0, false), o: join(e(3, 1, false), "x-y")},
			version: 2,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(2), Renewed: at(4), Pending: true}},
			want:    map[string]string{h: join(e(1, 0, false), e(2, 4, true)), o: join(e(3, 1, false), "x-y")},
		},
		{
			name:    "a holder the leases no longer name loses its entry for the version only",
			labels:  map[string]string{h: e(2, 3, false), o: join(e(1, 1, false), e(2, 2, false))},
			version: 2,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(2), Renewed: at(4)}},
			want:    map[string]string{h: e(2, 4, false), o: e(1, 1, false)},
		},
		{
			name:    "a release removes the label with its last entry",
			labels:  map[string]string{h: e(2, 3, false), o: e(2, 2, false)},
			version: 2,
			leases:  []engine.Lease{{Holder: "other", Ref: v(2), Renewed: at(2)}},
			want:    map[string]string{o: e(2, 2, false)},
		},
		{
			name:    "a release keeps the holder's other versions",
			labels:  map[string]string{h: join(e(1, 3, false), e(2, 1, true))},
			version: 2,
			leases:  nil,
			want:    map[string]string{h: e(1, 3, false)},
		},
		{
			name:    "leases on other versions are not written",
			labels:  map[string]string{h: e(1, 0, false)},
			version: 2,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(1), Renewed: at(5)}, {Holder: "other", Ref: v(3), Renewed: at(5)}},
			want:    map[string]string{h: e(1, 0, false)},
		},
		{
			name:    "a malformed label is replaced by the holder's entry",
			labels:  map[string]string{h: "x-y"},
			version: 2,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(2), Renewed: at(1)}},
			want:    map[string]string{h: e(2, 1, false)},
		},
		{
			name:    "an old single-entry label gains an entry",
			labels:  map[string]string{h: e(7, 0, false)},
			version: 8,
			leases:  []engine.Lease{{Holder: "holder", Ref: v(8), Renewed: at(1), Pending: true}},
			want:    map[string]string{h: join(e(7, 0, false), e(8, 1, true))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			labels := maps.Clone(tt.labels)
			labels["team"] = "platform"
			setLeases(labels, key, v(tt.version), tt.leases)
			if labels["team"] != "platform" {
				t.Error("a label set by others was changed")
			}
			delete(labels, "team")
			if !maps.Equal(labels, tt.want) {
				t.Errorf("labels = %v, want %v", labels, tt.want)
			}
		})
	}
}

// TestRotationLeases runs a rotation's lease writes in order on one key, as
// the engine makes them, and checks after each that the new version stays
// pending (never read as committed) until its commit, and that the served
// version keeps its committed lease throughout.
func TestRotationLeases(t *testing.T) {
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	v1, v2 := key+"/cryptoKeyVersions/1", key+"/cryptoKeyVersions/2"
	now := time.UnixMilli(1_800_000_000_000)
	labels := map[string]string{}
	// state reports the holder's lease on ref: present, pending.
	state := func(ref string) (bool, bool) {
		for _, l := range leasesOf(key, labels) {
			if l.Holder == "holder" && l.Ref == ref {
				return true, l.Pending
			}
		}
		return false, false
	}
	steps := []struct {
		name             string
		ref              string
		pending          bool
		v2Held, v2Pended bool
	}{
		{"serve v1", v1, false, false, false},
		{"create v2", v2, true, true, true},
		{"keep v1 alive", v1, false, true, true},
		{"read back and restore v1", v1, false, true, true},
		{"commit v2", v2, false, true, false},
		{"keep v1 alive while v2 takes over", v1, false, true, false},
	}
	for i, s := range steps {
		setLeases(labels, key, s.ref, []engine.Lease{{Holder: "holder", Ref: s.ref, Renewed: now.Add(time.Duration(i) * time.Second), Pending: s.pending}})
		if held, pending := state(v1); !held || pending {
			t.Errorf("after %q: the served v1's lease is held %v, pending %v; want a committed lease (%v)", s.name, held, pending, labels)
		}
		if held, pending := state(v2); held != s.v2Held || pending != s.v2Pended {
			t.Errorf("after %q: v2's lease is held %v, pending %v; want %v, %v (%v)", s.name, held, pending, s.v2Held, s.v2Pended, labels)
		}
	}
}

// TestLeaseBudget checks the label budget: beyond MaxLeases holders, or
// beyond 64 labels, the labels of the holders that wrote least recently go.
func TestLeaseBudget(t *testing.T) {
	const key = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
	v := func(n int) string { return fmt.Sprintf("%s/cryptoKeyVersions/%d", key, n) }
	now := time.UnixMilli(1_800_000_000_000)
	labels := map[string]string{
		// Its v1 entry is old, but its v2 entry recent: it stays.
		labelLeasePrefix + "aaaa": fmt.Sprintf("1-%d_2-%d-p", now.Add(-3*time.Hour).UnixMilli(), now.Add(time.Hour).UnixMilli()),
		labelLeasePrefix + "bbbb": "1-" + fmt.Sprint(now.Add(-2*time.Hour).UnixMilli()),
		labelLeasePrefix + "bad":  "x-y",
	}
	var many []engine.Lease
	for i := range engine.MaxLeases {
		many = append(many, engine.Lease{Holder: fmt.Sprintf("h%d", i), Ref: v(3), Renewed: now.Add(time.Duration(i) * time.Minute)})
	}
	setLeases(labels, key, v(3), many)
	holders := map[string]bool{}
	for _, l := range leasesOf(key, labels) {
		holders[l.Holder] = true
	}
	if len(holders) != engine.MaxLeases {
		t.Errorf("%d holders kept, want %d: %v", len(holders), engine.MaxLeases, labels)
	}
	for _, gone := range []string{"bbbb", "h0"} {
		if holders[gone] {
			t.Errorf("the old lease of %s was kept over newer ones", gone)
		}
	}
	if !holders["aaaa"] {
		t.Error("a holder whose latest entry is recent was dropped for its older one")
	}
	if labels[labelLeasePrefix+"bad"] != "x-y" {
		t.Error("a malformed label, holding no lease, was changed")
	}

	// A key whose labels are full keeps the newest lease rather than fail.
	full := map[string]string{}
	for i := range maxLabels - 1 {
		full[fmt.Sprintf("l%d", i)] = "v"
	}
	full[labelLeasePrefix+"old"] = "1-" + fmt.Sprint(now.Add(-time.Hour).UnixMilli())
	setLeases(full, key, v(1), []engine.Lease{{Holder: "old", Ref: v(1), Renewed: now.Add(-time.Hour)}, {Holder: "new", Ref: v(1), Renewed: now}})
	if len(full) > maxLabels {
		t.Errorf("%d labels, more than Cloud KMS's %d", len(full), maxLabels)
	}
	if _, ok := full[labelLeasePrefix+"new"]; !ok {
		t.Error("the newest lease was dropped to fit")
	}
}

// TestRotationKeepsServedLease rotates a key on the emulator as the engine
// does, one holder throughout: the creation's label update records the
// pending lease on the new version next to the committed lease on the
// served one, a refresh and keep-alive of the served version before the
// commit keep the pending lease, and the commit keeps the served one's.
func TestRotationKeepsServedLease(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a")
	// lease is the holder's lease on ref written now.
	lease := func(ref string, pending bool) engine.Lease {
		return engine.Lease{Holder: "proc", Ref: ref, Renewed: srv.Clock().Now().Truncate(time.Millisecond), Pending: pending}
	}
	// commit keeps g alive with the holder's committed lease.
	commit := func(g engine.Generation) engine.Generation {
		t.Helper()
		srv.Clock().Advance(time.Second)
		g.Leases = []engine.Lease{lease(g.Ref, false)}
		g, err := b.KeepAlive(callCtx(t), g)
		if err != nil {
			t.Fatalf("KeepAlive %s: %v", g.Ref, err)
		}
		return g
	}
	// check fails unless g's record holds the holder's lease on ref as
	// wanted (held, pending).
	check := func(step string, g engine.Generation, ref string, held, pending bool) {
		t.Helper()
		found := false
		for _, l := range g.Leases {
			if l.Holder == "proc" && l.Ref == ref {
				found = true
				if l.Pending != pending {
					t.Errorf("%s: the lease on %s is pending %v, want %v (%v)", step, ref, l.Pending, pending, g.Leases)
				}
			}
		}
		if found != held {
			t.Errorf("%s: lease on %s held %v, want %v (%v)", step, ref, found, held, g.Leases)
		}
	}

	req := createReq("x509-CA-A", engine.ECP256)
	req.Lease = lease("", true)
	v1, err := b.Create(callCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	v1 = commit(v1)
	check("v1 committed", v1, v1.Ref, true, false)

	srv.Clock().Advance(time.Second)
	req.Lease = lease("", true)
	v2, err := b.Create(callCtx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	check("v2 created", v2, v1.Ref, true, false)
	check("v2 created", v2, v2.Ref, true, true)

	// A keep-alive of v1 before v2's commit, on the record read again.
	fresh, err := b.Refresh(callCtx(t), v1)
	if err != nil {
		t.Fatal(err)
	}
	check("v1 refreshed", fresh, v2.Ref, true, true)
	v1 = commit(fresh)
	check("v1 kept alive", v1, v1.Ref, true, false)
	check("v1 kept alive", v1, v2.Ref, true, true)

	v2.Labels = v1.Labels
	v2 = commit(v2)
	check("v2 committed", v2, v1.Ref, true, false)
	check("v2 committed", v2, v2.Ref, true, false)
}
