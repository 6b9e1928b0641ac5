package plugin

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/kmskeeper/kmskeeper/engine"
	metricsv1 "github.com/kmskeeper/kmskeeper/proto/spire/hostservice/common/metrics/v1"
)

// fakeHost is a Metrics host service that records calls and can be made to
// hang, like a stuck SPIRE server.
type fakeHost struct {
	metricsv1.UnimplementedMetricsServer
	block chan struct{} // when not nil, calls wait for it to close

	mu       sync.Mutex
	counters []*metricsv1.IncrCounterRequest
	measures []*metricsv1.MeasureSinceRequest
}

func (f *fakeHost) wait(ctx context.Context) error {
	if f.block == nil {
		return nil
	}
	select {
	case <-f.block:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeHost) IncrCounter(ctx context.Context, r *metricsv1.IncrCounterRequest) (*emptypb.Empty, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counters = append(f.counters, r)
	return &emptypb.Empty{}, nil
}

func (f *fakeHost) MeasureSince(ctx context.Context, r *metricsv1.MeasureSinceRequest) (*emptypb.Empty, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.measures = append(f.measures, r)
	return &emptypb.Empty{}, nil
}

func (f *fakeHost) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.counters) + len(f.measures)
}

func startFakeHost(t *testing.T, f *fakeHost) *grpc.ClientConn {
	t.Helper()
	ln := bufconn.Listen(1 << 16)
	s := grpc.NewServer()
	metricsv1.RegisterMetricsServer(s, f)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func TestHostMetricsDelivers(t *testing.T) {
	f := &fakeHost{}
	h := newHostMetrics(startFakeHost(t, f), hclog.NewNullLogger())
	defer h.Close()

	key := []string{"kmskeeper", "sign", "latency"}
	start := time.Unix(1700000000, 5)
	h.MeasureSince(key, start, engine.Label{Name: "key_type", Value: "EC_P256"})
	key[0] = "changed by the caller" // the sender must have copied it
	h.IncrCounter([]string{"kmskeeper", "keys", "created"}, 2)

	deadline := time.Now().Add(5 * time.Second)
	for f.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.measures) != 1 || len(f.counters) != 1 {
		t.Fatalf("host got %d MeasureSince and %d IncrCounter, want 1 and 1", len(f.measures), len(f.counters))
	}
	m := f.measures[0]
	if m.GetKey()[0] != "kmskeeper" || m.GetTime() != start.UnixNano() || len(m.GetLabels()) != 1 || m.GetLabels()[0].GetValue() != "EC_P256" {
		t.Errorf("MeasureSince = %v", m)
	}
	if c := f.counters[0]; c.GetVal() != 2 || len(c.GetLabels()) != 0 {
		t.Errorf("IncrCounter = %v", c)
	}
}

// TestHostMetricsNeverBlocks checks that a stuck host costs measurements,
// not latency: the caller never waits, the overflow is dropped, and Close
// returns without waiting for the stuck call.
func TestHostMetricsNeverBlocks(t *testing.T) {
	f := &fakeHost{block: make(chan struct{})}
	defer close(f.block)
	h := newHostMetrics(startFakeHost(t, f), hclog.NewNullLogger())

	const n = 3 * metricsQueueSize
	begin := time.Now()
	for range n {
		h.IncrCounter([]string{"kmskeeper", "sign", "errors"}, 1)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("%d IncrCounter calls against a stuck host took %v", n, d)
	}
	if got := h.dropped.Load(); got < n-metricsQueueSize-1 {
		t.Errorf("dropped %d measurements, want at least %d", got, n-metricsQueueSize-1)
	}

	begin = time.Now()
	if err := h.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("Close with a stuck host took %v", d)
	}
	// After Close, reporting is still safe.
	h.IncrCounter([]string{"x"}, 1)
	h.MeasureSince([]string{"x"}, time.Now())
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
