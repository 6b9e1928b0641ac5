package keymanager

import (
	"testing"
	"time"
)

func TestBlockingLease(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	ttl := 36 * time.Hour
	at := func(d time.Duration) time.Time { return now.Add(-d) }
	g := Generation{KeyID: "x", Ref: "x1"}
	tests := []struct {
		name        string
		leases      []Lease
		newerUnheld bool
		want        string // the blocking holder, "" for none
	}{
		{name: "no leases", want: ""},
		{name: "own lease only", leases: []Lease{{"me", "x1", at(time.Hour)}}, want: ""},
		{name: "another live holder", leases: []Lease{{"me", "x1", at(time.Hour)}, {"b", "x1", at(2 * time.Hour)}}, want: "b"},
		{name: "another holder's lease ended", leases: []Lease{{"b", "x1", at(37 * time.Hour)}}, want: ""},
		{name: "lease on another generation only", leases: []Lease{{"b", "x2", at(time.Hour)}}, want: ""},
		{name: "holder moved on to a later lease", leases: []Lease{{"b", "x1", at(2 * time.Hour)}, {"b", "x2", at(time.Hour)}}, want: ""},
		{name: "holder moved on in the same millisecond", leases: []Lease{{"b", "x1", at(time.Hour)}, {"b", "x2", at(time.Hour)}}, want: ""},
		{name: "holder's other lease is older: it came back to this one", leases: []Lease{{"b", "x1", at(time.Hour)}, {"b", "x0", at(2 * time.Hour)}}, want: "b"},
		{name: "one of two moved on", leases: []Lease{{"b", "x1", at(3 * time.Hour)}, {"b", "x2", at(time.Hour)}, {"c", "x1", at(2 * time.Hour)}}, want: "c"},
		{name: "sole holder made a newer generation nobody holds", leases: []Lease{{"b", "x1", at(time.Hour)}}, newerUnheld: true, want: ""},
		{name: "two holders and a newer generation nobody holds", leases: []Lease{{"b", "x1", at(time.Hour)}, {"c", "x1", at(time.Hour)}}, newerUnheld: true, want: "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, held := blockingLease(g, tt.leases, tt.newerUnheld, "me", now, ttl)
			if held != (tt.want != "") || l.Holder != tt.want {
				t.Errorf("blockingLease = %+v, %v; want holder %q", l, held, tt.want)
			}
		})
	}
}

func TestWithLease(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	g := Generation{Ref: "x1"}
	for i := range 2 * MaxLeases {
		g.Leases = append(g.Leases, Lease{Holder: string(rune('a' + i)), Ref: "x1", Renewed: now.Add(-time.Duration(i) * time.Hour)})
	}
	g.Leases = append(g.Leases,
		Lease{Holder: "me", Ref: "x1", Renewed: now.Add(-time.Hour)},       // replaced
		Lease{Holder: "z", Ref: "x2", Renewed: now},                        // another generation's
		Lease{Holder: "old", Ref: "x1", Renewed: now.Add(-40 * time.Hour)}, // ended
	)
	got := withLease(g, "me", now, 36*time.Hour).Leases
	if len(got) != MaxLeases {
		t.Fatalf("%d leases, want %d: %v", len(got), MaxLeases, got)
	}
	last := got[len(got)-1]
	if last.Holder != "me" || !last.Renewed.Equal(now) || last.Ref != "x1" {
		t.Errorf("own lease = %+v", last)
	}
	for i, l := range got[:len(got)-1] {
		if l.Holder != string(rune('a'+i)) {
			t.Errorf("lease %d is %s's; the newest others' leases should be kept", i, l.Holder)
		}
	}
}
