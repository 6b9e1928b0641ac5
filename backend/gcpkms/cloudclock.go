package gcpkms

import (
	"context"
	"net/http"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kmskeeper/kmskeeper/engine"
)

// cloudClock estimates Cloud KMS's current time, as a lower bound, for the
// spire-last-update stamps, the staleness checks of retirement, the write
// pacer and the engine (CloudTime). Other servers judge a stamp on the
// cloud's time, and the engine judges leases and staleness on it, so a host
// clock running ahead or behind must not leak into either: the estimate is
// the engine's CloudClock, fed with every time Cloud KMS reports (a
// response's Date header, the creation time of a key or version).
type cloudClock struct {
	*engine.CloudClock
}

// newCloudClock returns a clock on local (time.Now when nil).
func newCloudClock(local func() time.Time) *cloudClock {
	return &cloudClock{engine.NewCloudClock(local)}
}

// observeTimestamp observes a creation time from an answer.
func (c *cloudClock) observeTimestamp(ts *timestamppb.Timestamp) {
	if ts != nil {
		c.Observe(ts.AsTime())
	}
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
		c.Observe(t)
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

// CloudTime implements engine.CloudTimer: the cloud's time as the
// latest answers reported it (moved on by the time elapsed since), or the
// zero time before any answer reported one. The engine builds its own
// lower bound from it, so the local clock never stands in for it here.
func (b *Backend) CloudTime() time.Time {
	t, _ := b.clock.Estimate()
	return t
}
