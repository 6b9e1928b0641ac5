package keyvault

import (
	"sync"
	"time"
)

// Clock is the emulator's notion of "now" for key dates (created, updated,
// nbf/exp checks, deletedDate, scheduledPurgeDate, automatic purge) and for
// throttling windows. It runs with the wall clock plus an offset that tests
// move with Advance or Set, so that retention periods of 90 days can be
// crossed in a test. Token lifetimes deliberately ignore it.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
	// frozen, when set, is the time Now returns: the clock only moves when
	// told to (Advance, Set).
	frozen time.Time
}

// Now returns the emulator's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		return c.frozen
	}
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d (backward if d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
	if !c.frozen.IsZero() {
		c.frozen = c.frozen.Add(d)
	}
}

// Set makes Now return t from this moment on (the clock keeps running
// unless it is frozen).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = time.Until(t)
	if !c.frozen.IsZero() {
		c.frozen = t
	}
}

// Freeze stops the clock at its current time until Reset: a test that
// counts on a time window (throttling's 10 s) then gets the same answers on
// a machine too loaded to make its calls within the window.
func (c *Clock) Freeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen.IsZero() {
		c.frozen = time.Now().Add(c.offset)
	}
}

// Reset makes the clock follow the wall clock again.
func (c *Clock) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = 0
	c.frozen = time.Time{}
}
