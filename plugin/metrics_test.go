package plugin

import (
	"context"
	"net"
	"slices"
	"strings"
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
	gauges   []*metricsv1.SetGaugeRequest
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

func (f *fakeHost) SetGauge(ctx context.Context, r *metricsv1.SetGaugeRequest) (*emptypb.Empty, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gauges = append(f.gauges, r)
	return &emptypb.Empty{}, nil
}

// counter returns the sum of every IncrCounter of name (dotted) and how
// many calls carried it.
func (f *fakeHost) counter(name string) (sum float32, calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.counters {
		if strings.Join(c.GetKey(), ".") == name {
			sum += c.GetVal()
			calls++
		}
	}
	return sum, calls
}

// gauge returns the last value set for name (dotted) and whether one was.
func (f *fakeHost) gauge(name string) (float32, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range slices.Backward(f.gauges) {
		if strings.Join(g.GetKey(), ".") == name {
			return g.GetVal(), true
		}
	}
	return 0, false
}

func startFakeHost(t testing.TB, f *fakeHost) *grpc.ClientConn {
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

// TestHostMetricsAggregates checks that a thousand measurements cost the
// host a handful of calls, sent at Close: one IncrCounter with the
// counter's sum, and a timer's summary (count, p50, p99, max).
func TestHostMetricsAggregates(t *testing.T) {
	f := &fakeHost{}
	h := newHostMetrics(startFakeHost(t, f), hclog.NewNullLogger(), time.Hour)

	key := []string{"kmskeeper", "sign", "latency"}
	label := engine.Label{Name: "key_type", Value: "EC_P256"}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 250 {
				// 20 observations of 10 ms and 980 of 2 ms.
				d := 2 * time.Millisecond
				if g == 0 && i < 20 {
					d = 10 * time.Millisecond
				}
				if i == 0 {
					// MeasureSince measures from start; the rest feed
					// the series directly, so that a preempted goroutine
					// cannot move the figures.
					h.MeasureSince(key, time.Now().Add(-d), label)
				} else {
					h.get(true, key, []engine.Label{label}).observe(d)
				}
				h.IncrCounter([]string{"kmskeeper", "sign", "errors"}, 1, engine.Label{Name: "code", Value: "Unavailable"})
			}
		})
	}
	wg.Wait()
	key[0] = "changed by the caller" // the series must have copied it
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	if sum, calls := f.counter("kmskeeper.sign.errors"); sum != 1000 || calls != 1 {
		t.Errorf("kmskeeper.sign.errors: %v in %d calls, want 1000 in 1", sum, calls)
	}
	if sum, calls := f.counter("kmskeeper.sign.latency.count"); sum != 1000 || calls != 1 {
		t.Errorf("kmskeeper.sign.latency.count: %v in %d calls, want 1000 in 1", sum, calls)
	}
	// The four MeasureSince calls measured a little more than d; the
	// quantiles are bucket middles, within 1/32.
	for name, want := range map[string]float32{"p50": 2, "p99": 10} {
		got, ok := f.gauge("kmskeeper.sign.latency." + name)
		if !ok || got < want*0.96 || got > want*1.04 {
			t.Errorf("kmskeeper.sign.latency.%s = %v ms (sent %v), want about %v", name, got, ok, want)
		}
	}
	if got, ok := f.gauge("kmskeeper.sign.latency.max"); !ok || got < 10 {
		t.Errorf("kmskeeper.sign.latency.max = %v ms (sent %v), want at least 10", got, ok)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, g := range f.gauges {
		if l := g.GetLabels(); len(l) != 1 || l[0].GetName() != "key_type" || l[0].GetValue() != "EC_P256" {
			t.Errorf("gauge %v has labels %v, want key_type=EC_P256", g.GetKey(), l)
		}
	}
}

// TestHostMetricsInterval checks that measurements arrive on the interval,
// without a Close, and that an interval without any sends nothing.
func TestHostMetricsInterval(t *testing.T) {
	f := &fakeHost{}
	h := newHostMetrics(startFakeHost(t, f), hclog.NewNullLogger(), 20*time.Millisecond)
	defer h.Close()
	h.IncrCounter([]string{"kmskeeper", "keys", "retired"}, 1, engine.Label{Name: "reason", Value: "superseded"})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if sum, _ := f.counter("kmskeeper.keys.retired"); sum == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the counter did not arrive within 5 s at a 20 ms interval")
		}
	}
	time.Sleep(100 * time.Millisecond) // a few more intervals
	if sum, calls := f.counter("kmskeeper.keys.retired"); sum != 1 || calls != 1 {
		t.Errorf("kmskeeper.keys.retired: %v in %d calls, want 1 in 1 (nothing sent for empty intervals)", sum, calls)
	}
}

// TestHostMetricsNeverBlocks checks that a stuck host costs measurements,
// not latency: the caller never waits, and Close returns without waiting
// long for the stuck call.
func TestHostMetricsNeverBlocks(t *testing.T) {
	f := &fakeHost{block: make(chan struct{})}
	defer close(f.block)
	h := newHostMetrics(startFakeHost(t, f), hclog.NewNullLogger(), time.Millisecond)

	begin := time.Now()
	for i := range 100000 {
		h.IncrCounter([]string{"kmskeeper", "sign", "errors"}, 1)
		h.MeasureSince([]string{"kmskeeper", "sign", "latency"}, begin, engine.Label{Name: "key_type", Value: []string{"EC_P256", "RSA_2048"}[i%2]})
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("200,000 measurements against a stuck host took %v", d)
	}

	begin = time.Now()
	if err := h.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Errorf("Close with a stuck host took %v", d)
	}
	// After Close, reporting is still safe.
	h.IncrCounter([]string{"x"}, 1)
	h.MeasureSince([]string{"x"}, time.Now())
	if err := h.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestHistogram checks the buckets' resolution and the quantiles.
func TestHistogram(t *testing.T) {
	for us := uint64(0); us < 1<<24; us = us*17/16 + 1 {
		i := bucketOf(us)
		if mid := bucketMid(i); float64(max(mid, us)-min(mid, us)) > float64(us)/32+1 {
			t.Fatalf("%d µs: bucket %d's middle is %d µs, more than 1/32 off", us, i, mid)
		}
		if j := bucketOf(us + 1); j != i && j != i+1 {
			t.Fatalf("buckets are not contiguous at %d µs: %d then %d", us, i, j)
		}
	}
	if i := bucketOf(1 << 62); i != histBuckets-1 {
		t.Errorf("bucketOf(2^62) = %d, want the last bucket %d", i, histBuckets-1)
	}
	var h histogram
	for i := range 100 {
		h.add(time.Duration(i+1) * time.Millisecond)
	}
	s := h.take()
	if s.count != 100 || s.max != 100000 {
		t.Errorf("count %d, max %d µs; want 100 and 100000", s.count, s.max)
	}
	if s.p50 < 48000 || s.p50 > 52000 || s.p99 < 96000 || s.p99 > 100000 {
		t.Errorf("p50 %d µs, p99 %d µs; want about 50000 and 99000", s.p50, s.p99)
	}
	if again := h.take(); again.count != 0 || again.max != 0 {
		t.Errorf("a second take found %d observations (max %d)", again.count, again.max)
	}
}
