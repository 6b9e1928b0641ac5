package engine

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// rateGuard bounds key creations per key ID in any hour. SPIRE retries a
// failed preparation every 10 s without backoff; without a bound a broken
// upstream makes the plugin create hundreds of billable keys an hour.
type rateGuard struct {
	mu      sync.Mutex
	max     int
	history map[string][]time.Time // creation attempts per key ID, oldest first
}

const guardWindow = time.Hour

func newRateGuard(max int) *rateGuard {
	return &rateGuard{max: max, history: make(map[string][]time.Time)}
}

// setMax changes the bound (a re-Configure).
func (g *rateGuard) setMax(max int) {
	g.mu.Lock()
	g.max = max
	g.mu.Unlock()
}

// seed notes, at load, n creations of id up to t: those listed, or the
// count the newest generation recorded if higher. They are all dated t, the
// latest they can have happened: the bound then holds across a restart,
// erring towards refusing a creation a little longer.
func (g *rateGuard) seed(id string, n int, t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for range n {
		g.history[id] = append(g.history[id], t)
	}
}

// recent returns how many creations of id were attempted within the hour
// before now.
func (g *rateGuard) recent(id string, now time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, t := range g.history[id] {
		if now.Sub(t) < guardWindow {
			n++
		}
	}
	return n
}

// take records a creation attempt for id made at now, or refuses it with
// ResourceExhausted saying when the next one is allowed. The attempt may take
// effect up to late after now (its call's budget): it is recorded at
// now+late, while the window is judged from now, so that no hour of the
// cloud's creation times holds more than the bound.
func (g *rateGuard) take(id string, now time.Time, late time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	recent := g.history[id][:0]
	for _, t := range g.history[id] {
		if now.Sub(t) < guardWindow {
			recent = append(recent, t)
		}
	}
	g.history[id] = recent
	if len(recent) >= g.max {
		oldest := recent[0]
		for _, t := range recent {
			if t.Before(oldest) {
				oldest = t
			}
		}
		next := oldest.Add(guardWindow)
		return Errorf(codes.ResourceExhausted,
			"key %s: refusing to create another key: %d keys were created for this ID in the last hour (max_key_creations_per_hour = %d), which points at a failing preparation that SPIRE keeps retrying; the next creation is allowed at %s (in %s)",
			id, len(recent), g.max, next.UTC().Format(time.RFC3339), next.Sub(now).Round(time.Second))
	}
	g.history[id] = append(recent, now.Add(late))
	return nil
}

func (g *rateGuard) String() string { return fmt.Sprintf("rateGuard(max=%d)", g.max) }
