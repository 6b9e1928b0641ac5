package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// countingMetrics counts the conflicts reported.
type countingMetrics struct {
	NopMetrics
	conflicts int
}

func (c *countingMetrics) IncrCounter(key []string, _ float32, _ ...Label) {
	if fmt.Sprint(key) == "[kmskeeper keys conflicts]" {
		c.conflicts++
	}
}

// TestDuplicateHoldersBounded checks that each holder sharing this server ID
// is reported once, and that a peer in a crash loop (a new holder name at
// every start) does not make the remembered set grow without bound.
func TestDuplicateHoldersBounded(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	metrics := &countingMetrics{}
	m := &Manager{holder: "me", log: hclog.NewNullLogger(), metrics: metrics, startedAt: start, duplicates: make(map[string]bool)}
	lease := func(holder string) Lease {
		return Lease{Holder: holder, Ref: "k/1", Renewed: start.Add(duplicateMargin + time.Minute)}
	}
	m.noteDuplicates([]Lease{lease("me"), lease("peer"), lease("peer")})
	if metrics.conflicts != 1 {
		t.Fatalf("one peer reported %d times, want once", metrics.conflicts)
	}
	for i := range 10 * maxReportedHolders {
		m.noteDuplicates([]Lease{lease(fmt.Sprintf("restart-%d", i))})
		if len(m.duplicates) > maxReportedHolders {
			t.Fatalf("after %d holders the set holds %d, bound %d", i+1, len(m.duplicates), maxReportedHolders)
		}
	}
	if metrics.conflicts != 1+10*maxReportedHolders {
		t.Fatalf("%d conflicts reported, want one per holder (%d)", metrics.conflicts, 1+10*maxReportedHolders)
	}
	// A lease written before this process started is no sign of a peer.
	m.noteDuplicates([]Lease{{Holder: "old", Ref: "k/1", Renewed: start}})
	if m.duplicates["old"] {
		t.Fatal("a lease older than this process was reported as a duplicate")
	}
}
