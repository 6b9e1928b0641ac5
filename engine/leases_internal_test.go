package engine

import (
	"testing"
	"time"
)

func TestWithLease(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	ttl := 36 * time.Hour
	g := Generation{Ref: "x1"}
	for i := range 2 * MaxLeases {
		g.Leases = append(g.Leases, Lease{Holder: string(rune('a' + i)), Ref: "x1", Renewed: now.Add(-time.Duration(i) * time.Hour)})
	}
	g.Leases = append(g.Leases,
		Lease{Holder: "me", Ref: "x1", Renewed: now.Add(-time.Hour)},       // replaced
		Lease{Holder: "z", Ref: "x2", Renewed: now},                        // another generation's
		Lease{Holder: "old", Ref: "x1", Renewed: now.Add(-40 * time.Hour)}, // ended
	)
	for _, pending := range []bool{false, true} {
		got := withLease(g, "me", now.Add(123*time.Microsecond), ttl, pending).Leases
		if len(got) != MaxLeases {
			t.Fatalf("%d leases, want %d: %v", len(got), MaxLeases, got)
		}
		last := got[len(got)-1]
		if last.Holder != "me" || !last.Renewed.Equal(now) || last.Ref != "x1" || last.Pending != pending {
			t.Errorf("own lease = %+v, want renewed %v (to the millisecond), pending %v", last, now, pending)
		}
		for i, l := range got[:len(got)-1] {
			if l.Holder != string(rune('a'+i)) {
				t.Errorf("lease %d is %s's; the newest others' leases should be kept", i, l.Holder)
			}
		}
	}
	// Another process's pending lease is kept whatever its age: its
	// creation may still be committed.
	p := Generation{Ref: "x1", Leases: []Lease{{Holder: "b", Ref: "x1", Renewed: now.Add(-100 * time.Hour), Pending: true}}}
	if got := withLease(p, "me", now, ttl, false).Leases; len(got) != 2 || got[0].Holder != "b" || !got[0].Pending {
		t.Errorf("leases = %+v, want b's pending lease kept", got)
	}
	// This process's own pending lease is replaced by its committed one.
	own := Generation{Ref: "x1", Leases: []Lease{{Holder: "me", Ref: "x1", Renewed: now, Pending: true}}}
	if got := withLease(own, "me", now, ttl, false).Leases; len(got) != 1 || got[0].Pending {
		t.Errorf("leases = %+v, want only the committed own lease", got)
	}
}

// TestOwnLeaseAndPending checks ownLease and pending on records laid out
// as the clouds list them.
func TestOwnLeaseAndPending(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		leases  []Lease
		own     bool
		pending bool
	}{
		{name: "no leases: laid out before leases, committed"},
		{name: "own committed", leases: []Lease{{Holder: "me", Ref: "x1", Renewed: now}}, own: true},
		{name: "own pending", leases: []Lease{{Holder: "me", Ref: "x1", Renewed: now, Pending: true}}, own: true, pending: true},
		{name: "pending and committed", leases: []Lease{{Holder: "b", Ref: "x1", Pending: true}, {Holder: "c", Ref: "x1"}}},
		{name: "leases on a sibling only", leases: []Lease{{Holder: "me", Ref: "x2", Pending: true}}},
		{name: "pending here, committed on a sibling", leases: []Lease{{Holder: "b", Ref: "x1", Pending: true}, {Holder: "c", Ref: "x2"}}, pending: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := Generation{Ref: "x1", Leases: tt.leases}
			if _, ok := ownLease(g, "me"); ok != tt.own {
				t.Errorf("ownLease = %v, want %v", ok, tt.own)
			}
			if got := pending(g); got != tt.pending {
				t.Errorf("pending = %v, want %v", got, tt.pending)
			}
		})
	}
}
