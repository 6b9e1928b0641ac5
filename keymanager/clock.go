package keymanager

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

// cloudClock estimates the cloud's current time as a lower bound: the latest
// time the cloud reported (a creation time, a response's Date), moved on by
// the local time elapsed since it was seen. It never trusts the local wall
// clock while the cloud has reported a time: every age the engine judges
// (a lease's, a key's since its last keep-alive, a superseded generation's
// settling) is then at most its true age, so a host clock running ahead of
// the cloud cannot make a live key look old, and one running behind cannot
// either.
type cloudClock struct {
	clock Clock

	mu    sync.Mutex
	seen  time.Time // the cloud time that gives the highest estimate
	at    time.Time // the local time seen was observed at
	known bool
}

func newCloudClock(c Clock) *cloudClock { return &cloudClock{clock: c} }

// observe records that the cloud's time was at least t now.
func (c *cloudClock) observe(t time.Time) {
	if t.IsZero() {
		return
	}
	local := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known || t.After(c.seen.Add(local.Sub(c.at))) {
		c.seen, c.at, c.known = t, local, true
	}
}

// now returns the estimate. Before the cloud has reported any time it is
// the local clock: nothing has been listed then, so nothing is judged.
func (c *cloudClock) now() time.Time {
	local := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known {
		return local
	}
	return c.seen.Add(local.Sub(c.at))
}

// offset is how far the estimate is ahead of the local clock, for logs.
func (c *cloudClock) offset() time.Duration {
	return c.now().Sub(c.clock.Now())
}
