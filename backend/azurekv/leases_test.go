package azurekv

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

const leaseRef = "spire-key-01a2299f-7655-72b3-9270-00df541b7a96-x509-CA-A"

// TestLeaseRecordRoundTrip checks the spire-leases tag value: what
// encodeRecord writes for a set of leases and a creation count, and that
// decodeRecord reads back the leases on the key (oldest first) and the count.
func TestLeaseRecordRoundTrip(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_123)
	hourAgo := now.Add(-time.Hour)
	lease := func(holder string, at time.Time, pending bool) engine.Lease {
		return engine.Lease{Holder: holder, Ref: leaseRef, Renewed: at, Pending: pending}
	}
	// many has two leases more than a record keeps; long has holders so
	// long that only five pending leases fit in a tag value with a count.
	var many, long []engine.Lease
	var manyKept, longKept []string
	for i := range engine.MaxLeases + 2 {
		at := now.Add(time.Duration(i) * time.Second)
		many = append(many, lease(fmt.Sprintf("h%d", i), at, false))
		if i >= 2 {
			manyKept = append(manyKept, fmt.Sprintf("h%d:%d", i, at.UnixMilli()))
		}
		if i < engine.MaxLeases {
			holder := fmt.Sprintf("%s%d", strings.Repeat("h", 31), i)
			long = append(long, lease(holder, at, true))
			if i >= 1 {
				longKept = append(longKept, fmt.Sprintf("%s:%d:p", holder, at.UnixMilli()))
			}
		}
	}

	for _, tt := range []struct {
		name   string
		leases []engine.Lease
		recent int
		want   string         // the encoded value
		back   []engine.Lease // the leases read back; nil means tt.leases
	}{
		{name: "nothing", want: ""},
		{name: "count only", recent: 3, want: "recent=3", back: []engine.Lease{}},
		{
			name:   "committed",
			leases: []engine.Lease{lease("aaaa", now, false)},
			want:   fmt.Sprintf("aaaa:%d", now.UnixMilli()),
		},
		{
			name:   "pending with count",
			leases: []engine.Lease{lease("aaaa", now, true)},
			recent: 2,
			want:   fmt.Sprintf("recent=2;aaaa:%d:p", now.UnixMilli()),
		},
		{
			name:   "oldest first, mixed",
			leases: []engine.Lease{lease("aaaa", now, true), lease("bbbb", hourAgo, false)},
			recent: 12,
			want:   fmt.Sprintf("recent=12;bbbb:%d;aaaa:%d:p", hourAgo.UnixMilli(), now.UnixMilli()),
			back:   []engine.Lease{lease("bbbb", hourAgo, false), lease("aaaa", now, true)},
		},
		{
			name: "other keys' and unwritable leases left out",
			leases: []engine.Lease{
				lease("aaaa", now, false),
				{Holder: "cccc", Ref: "spire-key-other", Renewed: now},
				lease("with:colon", now, false),
				lease("with;semicolon", now, false),
				lease("recent=9", now, false),
				lease("", now, false),
				lease(strings.Repeat("h", 33), now, false),
				lease("zero", time.Time{}, false),
			},
			want: fmt.Sprintf("aaaa:%d", now.UnixMilli()),
			back: []engine.Lease{lease("aaaa", now, false)},
		},
		{
			name:   "at most MaxLeases, the newest",
			leases: many,
			want:   strings.Join(manyKept, ";"),
			back:   many[2:],
		},
		{
			name:   "the oldest leases dropped to fit a tag value",
			leases: long,
			recent: 5,
			want:   "recent=5;" + strings.Join(longKept, ";"),
			back:   long[1:],
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := encodeRecord(tt.leases, leaseRef, tt.recent)
			if v != tt.want {
				t.Errorf("encoded %q, want %q", v, tt.want)
			}
			if len(v) > maxTagLen {
				t.Errorf("encoded %d characters, more than a tag value holds", len(v))
			}
			leases, recent := decodeRecord(v, leaseRef)
			want := tt.back
			if want == nil {
				want = tt.leases
			}
			if len(leases) != len(want) || len(want) > 0 && !reflect.DeepEqual(leases, want) {
				t.Errorf("decoded %v, want %v", leases, want)
			}
			if recent != tt.recent {
				t.Errorf("decoded count %d, want %d", recent, tt.recent)
			}
		})
	}
}

// TestLeaseRecordDecode checks what decodeRecord reads from values it did
// not write: a previous release's, and entries malformed or of a later
// release, which are skipped without losing the rest.
func TestLeaseRecordDecode(t *testing.T) {
	at := time.UnixMilli(1_800_000_000_123)
	committed := engine.Lease{Holder: "aaaa", Ref: leaseRef, Renewed: at}
	pending := engine.Lease{Holder: "bbbb", Ref: leaseRef, Renewed: at, Pending: true}
	for _, tt := range []struct {
		value  string
		leases []engine.Lease
		recent int
	}{
		{value: ""},
		{value: "aaaa:1800000000123", leases: []engine.Lease{committed}}, // as every release wrote
		{value: "bbbb:1800000000123:p", leases: []engine.Lease{pending}},
		{value: "recent=4;aaaa:1800000000123;bbbb:1800000000123:p", leases: []engine.Lease{committed, pending}, recent: 4},
		{value: "aaaa:1800000000123;recent=4", leases: []engine.Lease{committed}, recent: 4}, // order does not matter
		{value: "recent=4;recent=7", recent: 4},
		{value: "bad;x:y;:5;a:0;a:-3;a:12:q;a:12:p:p;a:1e3;stale", leases: nil},
		{value: "recent=;recent=x;recent=-2;recent=0;aaaa:1800000000123", leases: []engine.Lease{committed}},
		{value: ";;aaaa:1800000000123;", leases: []engine.Lease{committed}},
		{value: "with space:1800000000123;aaaa:1800000000123", leases: []engine.Lease{committed}},
	} {
		t.Run(tt.value, func(t *testing.T) {
			leases, recent := decodeRecord(tt.value, leaseRef)
			if !reflect.DeepEqual(leases, tt.leases) {
				t.Errorf("leases %v, want %v", leases, tt.leases)
			}
			if recent != tt.recent {
				t.Errorf("count %d, want %d", recent, tt.recent)
			}
		})
	}
}

// TestLeaseTags checks the tags a keep-alive writes: a key whose tags are
// full keeps its own tags, the configured ones and the lease record before
// tags others set, and the creation count survives a generation that does
// not carry it.
func TestLeaseTags(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_123)
	leases := []engine.Lease{
		{Holder: "bbbb", Ref: leaseRef, Renewed: now.Add(-time.Hour)},
		{Holder: "aaaa", Ref: leaseRef, Renewed: now, Pending: true},
	}
	b := &Backend{trustDomain: "example.org", serverID: "s", tags: map[string]string{"team": "platform"}}
	carried := map[string]string{"team": "old", tagLeases: "recent=3;stale"}
	for i := range maxTags {
		carried[fmt.Sprintf("other%02d", i)] = "v"
	}
	for _, tt := range []struct {
		name   string
		recent int
		want   int
	}{
		{"the generation's count", 5, 5},
		{"the count last read", 0, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tags := b.leaseTags(engine.Generation{KeyID: "x509-CA-A", Ref: leaseRef, Leases: leases, Labels: carried, RecentCreations: tt.recent})
			if len(tags) > maxTags {
				t.Errorf("%d tags, more than Key Vault's %d", len(tags), maxTags)
			}
			for k, want := range map[string]string{
				tagTrustDomain: "example.org",
				tagServerID:    "s",
				"team":         "platform",
				tagLeases:      encodeRecord(leases, leaseRef, tt.want),
				"other00":      "v", // others' tags are kept while they fit
			} {
				if got := tagValue(tags, k); got != want {
					t.Errorf("tag %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// FuzzLeaseRecord reads any spire-leases value (a tag edited by hand, a
// later release's) and writes it back as a keep-alive would: decoding never
// panics, the value written fits a tag, and reading it again gives the same
// count and leases each read the first time. Plain go test runs the seeds;
// go test -fuzz FuzzLeaseRecord explores further.
func FuzzLeaseRecord(f *testing.F) {
	for _, seed := range []string{
		"",
		"aaaa:1800000000123",
		"recent=4;aaaa:1800000000123;bbbb:1800000000124:p",
		"recent=4;recent=7;x:y;:5;a:12:q;a:12:p:p",
		strings.Repeat("h", 32) + ":1800000000123:p;" + strings.Repeat("recent=99999999999999999999;", 3),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		leases, recent := decodeRecord(v, leaseRef)
		if recent < 0 {
			t.Fatalf("count %d read from %q", recent, v)
		}
		for _, l := range leases {
			if !validHolder(l.Holder) || l.Ref != leaseRef || l.Renewed.UnixMilli() <= 0 {
				t.Fatalf("lease %+v read from %q", l, v)
			}
		}
		w := encodeRecord(leases, leaseRef, recent)
		if len(w) > maxTagLen {
			t.Fatalf("%q written back as %d characters", v, len(w))
		}
		again, n := decodeRecord(w, leaseRef)
		if n != recent {
			t.Fatalf("count %d written back as %q, read as %d", recent, w, n)
		}
		for _, l := range again {
			if !slices.ContainsFunc(leases, func(o engine.Lease) bool { return reflect.DeepEqual(o, l) }) {
				t.Fatalf("lease %+v read back from %q was not in %q", l, w, v)
			}
		}
	})
}
