package engine

import (
	"sync"
	"time"
)

// Clock is the engine's time source; tests and benchmarks inject a fake one
// to move through days without waiting.
type Clock interface {
	Now() time.Time
	// After behaves like time.After.
	After(d time.Duration) <-chan time.Time
}

// Schedule sets how often the background passes run.
type Schedule struct {
	// LivenessInterval is how often the liveness pass looks for keys whose
	// Updated time is older than KeepAliveAge.
	LivenessInterval time.Duration
	// KeepAliveAge is the age of Updated at which a served key is kept alive.
	KeepAliveAge time.Duration
	// CleanupInterval is how often the cleanup pass lists the backend.
	CleanupInterval time.Duration
	// StaleAfter is the age of Updated after which another server's key is
	// considered abandoned and retired.
	StaleAfter time.Duration
}

// Default schedule.
const (
	DefaultLivenessInterval = 6 * time.Hour
	DefaultKeepAliveAge     = 24 * time.Hour
	DefaultCleanupInterval  = 24 * time.Hour
	// DefaultStaleAfter matches SPIRE's built-in plugins, so that a trust
	// domain mixing them and kmskeeper agrees on when a server is gone.
	DefaultStaleAfter = 14 * 24 * time.Hour
)

func (s Schedule) withDefaults() Schedule {
	if s.LivenessInterval <= 0 {
		s.LivenessInterval = DefaultLivenessInterval
	}
	if s.KeepAliveAge <= 0 {
		s.KeepAliveAge = DefaultKeepAliveAge
	}
	if s.CleanupInterval <= 0 {
		s.CleanupInterval = DefaultCleanupInterval
	}
	if s.StaleAfter <= 0 {
		s.StaleAfter = DefaultStaleAfter
	}
	return s
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// CloudClock estimates a cloud's current time as a lower bound: the latest
// time the cloud reported (a creation time, a response's Date header), moved
// on by the local time elapsed since it was seen. It never trusts the local
// wall clock while the cloud has reported a time (the local clock is only a
// stopwatch; with time.Now, its monotonic reading): every age judged on it
// (a lease's, a key's since its last keep-alive, a superseded generation's
// settling) is then at most its true age, so a host clock running ahead of
// the cloud cannot make a live key look old, and one running behind cannot
// either. The engine keeps one, and so do backends that stamp times.
type CloudClock struct {
	local func() time.Time

	mu    sync.Mutex
	seen  time.Time // the cloud time that gives the highest estimate
	at    time.Time // the local time seen was observed at
	known bool
}

// NewCloudClock returns a clock that measures elapsed time with local
// (time.Now when nil).
func NewCloudClock(local func() time.Time) *CloudClock {
	if local == nil {
		local = time.Now
	}
	return &CloudClock{local: local}
}

// Observe records that the cloud's time was at least t now. A report below
// the current estimate changes nothing.
func (c *CloudClock) Observe(t time.Time) {
	if t.IsZero() {
		return
	}
	local := c.local()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known || t.After(c.seen.Add(local.Sub(c.at))) {
		c.seen, c.at, c.known = t, local, true
	}
}

// Estimate returns the estimate, and whether the cloud has reported a time.
func (c *CloudClock) Estimate() (time.Time, bool) {
	local := c.local()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known {
		return time.Time{}, false
	}
	return c.seen.Add(local.Sub(c.at)), true
}

// Now returns the estimate. Before the cloud has reported any time it is
// the local clock: nothing has been listed then, so nothing is judged.
func (c *CloudClock) Now() time.Time {
	if t, ok := c.Estimate(); ok {
		return t
	}
	return c.local()
}
