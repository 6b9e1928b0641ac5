package manualclock

import (
	"testing"
	"time"
)

func TestAdvanceFiresWhatFallsDue(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New(start)
	now := c.After(0)
	soon, later := c.After(time.Minute), c.After(time.Hour)
	select {
	case got := <-now:
		if !got.Equal(start) {
			t.Fatalf("After(0) fired with %v, want %v", got, start)
		}
	default:
		t.Fatal("After(0) did not fire at once")
	}
	if n := c.Pending(); n != 2 {
		t.Fatalf("Pending() = %d, want 2", n)
	}
	c.Advance(30 * time.Second)
	select {
	case <-soon:
		t.Fatal("a one-minute timer fired after 30 s")
	default:
	}
	c.Advance(30 * time.Second)
	if got := <-soon; !got.Equal(start.Add(time.Minute)) {
		t.Fatalf("one-minute timer fired with %v", got)
	}
	if n := c.Pending(); n != 1 {
		t.Fatalf("Pending() = %d after one fired, want 1", n)
	}
	c.Advance(2 * time.Hour)
	if got := <-later; !got.Equal(start.Add(2*time.Hour + time.Minute)) {
		t.Fatalf("one-hour timer fired with %v, want the time it was advanced to", got)
	}
	if got := c.Now(); !got.Equal(start.Add(2*time.Hour + time.Minute)) {
		t.Fatalf("Now() = %v", got)
	}
}
