package gcpkms

import (
	"context"
	"net/http"
	"sync"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// cloudClock estimates Cloud KMS's current time, as a lower bound, for the
// spire-last-update stamps, the staleness checks of retirement, the write
// pacer and the engine (CloudTime). Other servers judge a stamp on the
// cloud's time, and the engine judges leases and staleness on it, so a
// host clock running ahead (a key looks older than it is, and is retired
// while in use) or behind (a stamp makes a live key look old to everyone
// else) must not leak into either.
//
// The estimate is the latest time the cloud reported (a response's Date
// header, the creation time of a key or version it answered with), moved
// on by the local time elapsed since that answer arrived. Both reports are
// lower bounds of the cloud's time on arrival: a Date header is truncated
// to the second and was written before the answer travelled, a resource
// was created before it was reported. Once the cloud has reported a time
// the local wall clock is never read as a time, only as a stopwatch: with
// time.Now that is its monotonic reading, which a wall clock step does not
// move. Before any report the local clock stands in, as nothing has been
// listed yet to judge.
type cloudClock struct {
	// local is the host clock, used as a stopwatch once the cloud reported
	// a time.
	local func() time.Time

	mu    sync.Mutex
	seen  time.Time // the reported cloud time giving the highest estimate
	at    time.Time // local's reading when seen arrived
	known bool
}

// newCloudClock returns a clock on local (time.Now when nil).
func newCloudClock(local func() time.Time) *cloudClock {
	if local == nil {
		local = time.Now
	}
	return &cloudClock{local: local}
}

// observe records that the cloud's time was at least t when the answer
// carrying it arrived (now). A report lower than the current estimate
// changes nothing: the estimate only ever takes the better lower bound.
func (c *cloudClock) observe(t time.Time) {
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

// observeTimestamp observes a creation time from an answer.
func (c *cloudClock) observeTimestamp(ts *timestamppb.Timestamp) {
	if ts != nil {
		c.observe(ts.AsTime())
	}
}

// Now returns the estimated cloud time: the local clock until the cloud
// has reported a time, then only the cloud's reports moved on by elapsed
// local time.
func (c *cloudClock) Now() time.Time {
	t, ok := c.estimate()
	if !ok {
		return c.local()
	}
	return t
}

// estimate returns the estimate and whether the cloud has reported a time.
func (c *cloudClock) estimate() (time.Time, bool) {
	local := c.local()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.known {
		return time.Time{}, false
	}
	return c.seen.Add(local.Sub(c.at)), true
}

// interceptor observes the cloud's time in every answer, failed ones
// included (a NotFound carries a Date as well): the Date response header,
// which Google's front ends and the emulator send, and the creation times
// of the keys and versions the answer holds. gax retries call it once per
// attempt, so every answer counts.
func (c *cloudClock) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var header metadata.MD
	err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&header))...)
	if t, ok := dateHeader(header); ok {
		c.observe(t)
	}
	if err != nil {
		return err
	}
	switch r := reply.(type) {
	case *kmspb.CryptoKey:
		c.observeTimestamp(r.GetCreateTime())
	case *kmspb.CryptoKeyVersion:
		c.observeTimestamp(r.GetCreateTime())
	case *kmspb.ListCryptoKeysResponse:
		for _, k := range r.GetCryptoKeys() {
			c.observeTimestamp(k.GetCreateTime())
		}
	case *kmspb.ListCryptoKeyVersionsResponse:
		for _, v := range r.GetCryptoKeyVersions() {
			c.observeTimestamp(v.GetCreateTime())
		}
	}
	return nil
}

// dateHeader parses an answer's HTTP Date header (RFC 9110 formats). The
// latest value wins when several were sent.
func dateHeader(md metadata.MD) (time.Time, bool) {
	var latest time.Time
	for _, v := range md.Get("date") {
		if t, err := http.ParseTime(v); err == nil && t.After(latest) {
			latest = t
		}
	}
	return latest, !latest.IsZero()
}

// CloudTime implements keymanager.CloudTimer: the cloud's time as the
// latest answers reported it (moved on by the time elapsed since), or the
// zero time before any answer reported one. The engine builds its own
// lower bound from it, so the local clock never stands in for it here.
func (b *Backend) CloudTime() time.Time {
	t, _ := b.clock.estimate()
	return t
}
