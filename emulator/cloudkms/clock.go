package cloudkms

import (
	"sync"
	"time"
)

// Clock is the emulator's notion of time. Version creation and destruction
// times, the end of PENDING_GENERATION, the DESTROY_SCHEDULED -> DESTROYED
// transition and quota windows all follow it, so tests can move weeks forward
// in a millisecond instead of waiting.
//
// A Clock either follows the wall clock plus an offset (NewClock) or stands
// still until advanced (NewManualClock). It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	manual bool
	fixed  time.Time     // manual clocks: the current time
	offset time.Duration // wall clocks: added to time.Now
}

// NewClock returns a clock that follows the wall clock; Advance moves it ahead
// of the wall clock. The CLI uses it so PENDING_GENERATION ends on its own.
func NewClock() *Clock { return &Clock{} }

// NewManualClock returns a clock frozen at start that only moves when
// Advance or Set is called, for deterministic tests.
func NewManualClock(start time.Time) *Clock {
	return &Clock{manual: true, fixed: start.UTC()}
}

// Now returns the emulator's current time (UTC, microsecond precision, like
// the timestamps the service returns).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.manual {
		return c.fixed
	}
	return time.Now().Add(c.offset).UTC().Truncate(time.Microsecond)
}

// Advance moves the clock forward by d (negative d is ignored: time in the
// emulator never goes back, as scheduled destructions would otherwise undo).
func (c *Clock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.manual {
		c.fixed = c.fixed.Add(d)
		return
	}
	c.offset += d
}

// Set moves the clock to t if t is later than Now.
func (c *Clock) Set(t time.Time) {
	if d := t.Sub(c.Now()); d > 0 {
		c.Advance(d)
	}
}

// Offset reports how far the clock runs ahead of the wall clock (wall clocks)
// or ahead of its start (manual clocks are reported as zero); persistence
// uses it to keep time monotonic across restarts.
func (c *Clock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.manual {
		return 0
	}
	return c.offset
}
