package engine

import (
	"testing"
	"time"
)

// stepClock is a local clock a test sets.
type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time                       { return c.now }
func (c *stepClock) After(time.Duration) <-chan time.Time { return nil }

// TestCloudClock checks the estimate of the cloud's time: the local clock
// until the cloud reports a time, then the highest time reported moved on
// by the local time elapsed since, whether the cloud is ahead of or behind
// the local clock; a report lower than the estimate never moves it back.
func TestCloudClock(t *testing.T) {
	local := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	type step struct {
		advance time.Duration // local time elapsed before the step
		observe time.Duration // cloud time reported, relative to local; 0 for none
		zero    bool          // report the zero time
		want    time.Duration // estimate after the step, relative to local
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no observation: local", []step{{want: 0}, {advance: time.Hour, want: 0}}},
		{"zero time is no observation", []step{{zero: true, want: 0}}},
		{"cloud ahead", []step{{observe: 15 * day, want: 15 * day}, {advance: time.Hour, want: 15 * day}}},
		{"cloud behind", []step{{observe: -15 * day, want: -15 * day}, {advance: time.Hour, want: -15 * day}}},
		{"cloud a second behind", []step{{observe: -time.Second, want: -time.Second}}},
		{"a higher report raises it", []step{{observe: -time.Hour, want: -time.Hour}, {advance: time.Minute, observe: -time.Minute, want: -time.Minute}}},
		{"a lower report never lowers it", []step{{observe: time.Hour, want: time.Hour}, {advance: time.Minute, observe: 30 * time.Minute, want: time.Hour}, {advance: time.Minute, observe: -day, want: time.Hour}}},
		{"a report equal to the estimate changes nothing", []step{{observe: time.Hour, want: time.Hour}, {advance: time.Minute, observe: time.Hour, want: time.Hour}}},
		{"a report later than the last one but below the estimate", []step{{observe: time.Second, want: time.Second}, {advance: 10 * time.Second, observe: -5 * time.Second, want: time.Second}}},
		{"a zero report after an observation changes nothing", []step{{observe: -day, want: -day}, {advance: time.Hour, zero: true, want: -day}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lc := &stepClock{now: local}
			c := NewCloudClock(lc.Now)
			prev := time.Time{}
			for i, s := range tt.steps {
				lc.now = lc.now.Add(s.advance)
				switch {
				case s.zero:
					c.Observe(time.Time{})
				case s.observe != 0:
					c.Observe(lc.now.Add(s.observe))
				}
				got := c.Now()
				if want := lc.now.Add(s.want); !got.Equal(want) {
					t.Fatalf("step %d: estimate %v, want %v (local %+v)", i, got, want, s.want)
				}
				if off := c.Now().Sub(lc.Now()); off != s.want {
					t.Fatalf("step %d: offset %v, want %v", i, off, s.want)
				}
				if got.Before(prev) {
					t.Fatalf("step %d: the estimate went back from %v to %v", i, prev, got)
				}
				prev = got
			}
		})
	}
}
