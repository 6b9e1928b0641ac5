package gcpkms

import (
	"context"
	"sync"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// cloudClock estimates Cloud KMS's time for the spire-last-update stamps:
// the local clock, moved forward to the newest creation time Cloud KMS has
// reported (the engine estimates the cloud's time the same way). Other
// servers judge a stamp against the cloud's time, so a stamp from a local
// clock running behind made this server's live keys look older than they
// are, and retired by the others once the lag passed the stale period.
type cloudClock struct {
	mu     sync.Mutex
	offset time.Duration
	local  func() time.Time
}

func newCloudClock() *cloudClock { return &cloudClock{local: time.Now} }

// Now returns the estimated cloud time.
func (c *cloudClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local().Add(c.offset)
}

// observe moves the estimate forward to a creation time Cloud KMS reported.
func (c *cloudClock) observe(ts *timestamppb.Timestamp) {
	if ts == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if off := ts.AsTime().Sub(c.local()); off > c.offset {
		c.offset = off
	}
}

// interceptor reads the creation times of every key and version Cloud KMS
// answers with.
func (c *cloudClock) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err != nil {
		return err
	}
	switch r := reply.(type) {
	case *kmspb.CryptoKey:
		c.observe(r.GetCreateTime())
	case *kmspb.CryptoKeyVersion:
		c.observe(r.GetCreateTime())
	case *kmspb.ListCryptoKeysResponse:
		for _, k := range r.GetCryptoKeys() {
			c.observe(k.GetCreateTime())
		}
	case *kmspb.ListCryptoKeyVersionsResponse:
		for _, v := range r.GetCryptoKeyVersions() {
			c.observe(v.GetCreateTime())
		}
	}
	return nil
}
