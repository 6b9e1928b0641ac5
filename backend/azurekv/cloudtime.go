package azurekv

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/kmskeeper/kmskeeper/engine"
)

var _ engine.CloudTimer = (*Backend)(nil)

// CloudTime implements engine.CloudTimer: the vault's time as the Date
// header of its latest answer said, so that the engine judges lease and
// staleness ages on the vault's clock, the one that stamps attributes.created
// and attributes.updated, whatever the host's clock says. It is the zero
// time until the vault has answered.
func (b *Backend) CloudTime() time.Time {
	return b.clock.now()
}

// cloudClock keeps the latest time the vault's answers carried in their
// Date headers. It is an azcore per-retry policy, so that every answer
// counts, throttled and failed ones and the authentication challenge
// included: each is the vault speaking. The newest time seen is kept, never
// an older one, since answers to concurrent calls arrive in any order; a
// Date header has whole seconds, cut down, so the time is a lower bound of
// the vault's clock when the answer left it.
type cloudClock struct {
	latest atomic.Int64 // Unix nanoseconds; 0 until an answer carried a Date
}

var _ policy.Policy = (*cloudClock)(nil)

// Do implements policy.Policy.
func (c *cloudClock) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	if resp != nil {
		if t, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
			c.observe(t)
		}
	}
	return resp, err
}

// observe records t if it is later than every time recorded so far.
func (c *cloudClock) observe(t time.Time) {
	n := t.UnixNano()
	for {
		old := c.latest.Load()
		if n <= old || c.latest.CompareAndSwap(old, n) {
			return
		}
	}
}

// now returns the latest time recorded, or the zero time. A nil clock (a
// Backend built by hand in a test) has recorded nothing.
func (c *cloudClock) now() time.Time {
	if c == nil {
		return time.Time{}
	}
	n := c.latest.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
