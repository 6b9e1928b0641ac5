package plugin

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kmskeeper/kmskeeper/engine"
	metricsv1 "github.com/kmskeeper/kmskeeper/proto/spire/hostservice/common/metrics/v1"
)

const (
	// metricsQueueSize bounds the measurements waiting for the host. The
	// engine reports from the signing path, so a slow or stuck host must
	// cost measurements, never latency.
	metricsQueueSize = 1024
	// metricsCallTimeout bounds one call to the host's Metrics service.
	metricsCallTimeout = 5 * time.Second
)

// noMetrics is the sink when SPIRE does not offer the Metrics host service.
type noMetrics struct{}

func (noMetrics) IncrCounter([]string, float32, ...engine.Label)    {}
func (noMetrics) MeasureSince([]string, time.Time, ...engine.Label) {}

// hostMetrics implements engine.Metrics over SPIRE's Metrics host
// service without ever blocking the caller: measurements go to a bounded
// queue that one goroutine sends in order, and are dropped when it is full.
type hostMetrics struct {
	client  metricsv1.MetricsClient
	conn    *grpc.ClientConn
	log     hclog.Logger
	queue   chan proto.Message
	dropped atomic.Uint64

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// newHostMetrics starts the sender over conn; Close stops it and closes conn.
func newHostMetrics(conn *grpc.ClientConn, log hclog.Logger) *hostMetrics {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hostMetrics{
		client: metricsv1.NewMetricsClient(conn),
		conn:   conn,
		log:    log,
		queue:  make(chan proto.Message, metricsQueueSize),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go h.run(ctx)
	return h
}

// IncrCounter queues an IncrCounter call to the host.
func (h *hostMetrics) IncrCounter(key []string, val float32, labels ...engine.Label) {
	h.enqueue(&metricsv1.IncrCounterRequest{Key: cloneKey(key), Val: val, Labels: labelsToProto(labels)})
}

// MeasureSince queues a MeasureSince call to the host.
func (h *hostMetrics) MeasureSince(key []string, start time.Time, labels ...engine.Label) {
	h.enqueue(&metricsv1.MeasureSinceRequest{Key: cloneKey(key), Time: start.UnixNano(), Labels: labelsToProto(labels)})
}

func (h *hostMetrics) enqueue(m proto.Message) {
	select {
	case h.queue <- m:
	default:
		h.dropped.Add(1)
	}
}

func (h *hostMetrics) run(ctx context.Context) {
	defer close(h.done)
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-h.queue:
			if err := h.send(ctx, m); err != nil && ctx.Err() == nil {
				h.log.Debug("Metrics host service call failed", "error", err)
			}
		}
	}
}

func (h *hostMetrics) send(ctx context.Context, m proto.Message) error {
	ctx, cancel := context.WithTimeout(ctx, metricsCallTimeout)
	defer cancel()
	var err error
	switch req := m.(type) {
	case *metricsv1.IncrCounterRequest:
		_, err = h.client.IncrCounter(ctx, req)
	case *metricsv1.MeasureSinceRequest:
		_, err = h.client.MeasureSince(ctx, req)
	}
	return err
}

// Close stops the sender, waits for it and closes the connection to the
// host. Measurements still queued are dropped.
func (h *hostMetrics) Close() error {
	var err error
	h.stopOnce.Do(func() {
		h.cancel()
		<-h.done
		if n := h.dropped.Load(); n > 0 {
			h.log.Warn("Metrics dropped because the host was slower than the plugin", "dropped", n)
		}
		err = h.conn.Close()
	})
	return err
}

func cloneKey(key []string) []string { return append([]string(nil), key...) }

func labelsToProto(labels []engine.Label) []*metricsv1.Label {
	if len(labels) == 0 {
		return nil
	}
	out := make([]*metricsv1.Label, len(labels))
	for i, l := range labels {
		out[i] = &metricsv1.Label{Name: l.Name, Value: l.Value}
	}
	return out
}
