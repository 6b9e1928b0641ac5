package plugin

import (
	"context"
	"hash/maphash"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/kmskeeper/kmskeeper/engine"
	metricsv1 "github.com/kmskeeper/kmskeeper/proto/spire/hostservice/common/metrics/v1"
)

const (
	// DefaultMetricsInterval is how often the aggregated measurements are
	// sent to SPIRE's Metrics host service. SPIRE's own in-memory sink
	// aggregates over 10 s and statsd flushes every 10 s; 5 s keeps a rare
	// event (a retirement, a conflict) no more than a few seconds late.
	DefaultMetricsInterval = 5 * time.Second
	// metricsCallTimeout bounds one call to the host's Metrics service.
	metricsCallTimeout = 5 * time.Second
	// metricsFinalFlush bounds the flush at a clean stop: a stuck host must
	// not hold up Deinit.
	metricsFinalFlush = 500 * time.Millisecond
)

// hostMetrics implements engine.Metrics over SPIRE's Metrics host service
// without a host call per measurement: the engine reports from the signing
// path, where a call per signature cost more CPU than the signature's own
// cloud call (issue 17). Measurements are aggregated in process, per series
// (key and labels), with atomic adds, and one goroutine sends what changed
// every interval and once more at Close:
//
//   - a counter (IncrCounter) is sent as one IncrCounter of its sum over the
//     interval, under the same key and labels;
//   - a timer (MeasureSince) is sent as a summary of the interval: an
//     IncrCounter <key>.count of the observations, and SetGauge <key>.p50,
//     <key>.p99 and <key>.max in milliseconds.
//
// A slow host delays the sums and never blocks the caller; a call that
// fails (the host gone, or 5 s without an answer) loses what it carried,
// and the rest of that send waits for the next interval.
type hostMetrics struct {
	client   metricsv1.MetricsClient
	conn     *grpc.ClientConn
	log      hclog.Logger
	interval time.Duration

	seed   maphash.Seed
	series atomic.Pointer[map[uint64][]*series] // copied on write
	addMu  sync.Mutex                           // serializes new series

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// newHostMetrics starts the sender over conn, sending every interval (0:
// DefaultMetricsInterval); Close stops it and closes conn.
func newHostMetrics(conn *grpc.ClientConn, log hclog.Logger, interval time.Duration) *hostMetrics {
	if interval <= 0 {
		interval = DefaultMetricsInterval
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &hostMetrics{
		client:   metricsv1.NewMetricsClient(conn),
		conn:     conn,
		log:      log,
		interval: interval,
		seed:     maphash.MakeSeed(),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	h.series.Store(&map[uint64][]*series{})
	go h.run(ctx)
	return h
}

// IncrCounter adds val to the counter's sum for this interval.
func (h *hostMetrics) IncrCounter(key []string, val float32, labels ...engine.Label) {
	h.get(false, key, labels).addCount(float64(val))
}

// MeasureSince records the time since start in the timer's distribution
// for this interval.
func (h *hostMetrics) MeasureSince(key []string, start time.Time, labels ...engine.Label) {
	h.get(true, key, labels).observe(time.Since(start))
}

// get returns the series of key and labels, creating it on first use.
// Looking one up allocates nothing: the series are found by a hash of their
// names in a map that is only ever replaced, never written.
func (h *hostMetrics) get(timer bool, key []string, labels []engine.Label) *series {
	sum := h.hash(timer, key, labels)
	for _, s := range (*h.series.Load())[sum] {
		if s.is(timer, key, labels) {
			return s
		}
	}
	h.addMu.Lock()
	defer h.addMu.Unlock()
	old := *h.series.Load()
	for _, s := range old[sum] {
		if s.is(timer, key, labels) {
			return s
		}
	}
	s := newSeries(timer, key, labels)
	next := make(map[uint64][]*series, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[sum] = append(slices.Clip(old[sum]), s)
	h.series.Store(&next)
	return s
}

func (h *hostMetrics) hash(timer bool, key []string, labels []engine.Label) uint64 {
	var d maphash.Hash
	d.SetSeed(h.seed)
	if timer {
		d.WriteByte(1)
	}
	for _, k := range key {
		d.WriteString(k)
		d.WriteByte(0)
	}
	for _, l := range labels {
		d.WriteByte(1)
		d.WriteString(l.Name)
		d.WriteByte(0)
		d.WriteString(l.Value)
	}
	return d.Sum64()
}

func (h *hostMetrics) run(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.flush(ctx)
		}
	}
}

// flush sends what every series gathered since the last flush.
func (h *hostMetrics) flush(ctx context.Context) {
	for _, list := range *h.series.Load() {
		for _, s := range list {
			if err := s.flush(ctx, h.client); err != nil {
				if ctx.Err() == nil {
					h.log.Debug("Metrics host service call failed", "error", err)
				}
				return
			}
		}
	}
}

// Close stops the sender, sends what was gathered since its last flush
// (for at most metricsFinalFlush) and closes the connection to the host.
func (h *hostMetrics) Close() error {
	var err error
	h.stopOnce.Do(func() {
		h.cancel()
		<-h.done
		ctx, cancel := context.WithTimeout(context.Background(), metricsFinalFlush)
		h.flush(ctx)
		cancel()
		err = h.conn.Close()
	})
	return err
}

// series is one metric (key and labels) being aggregated.
type series struct {
	key    []string
	labels []engine.Label
	wire   []*metricsv1.Label
	timer  bool

	// A counter's sum since the last flush (math.Float64bits).
	sum atomic.Uint64
	// A timer's observations since the last flush, in microseconds.
	hist *histogram
	// names of the summary metrics of a timer.
	countKey, p50Key, p99Key, maxKey []string
}

func newSeries(timer bool, key []string, labels []engine.Label) *series {
	s := &series{key: slices.Clone(key), labels: slices.Clone(labels), timer: timer}
	for _, l := range labels {
		s.wire = append(s.wire, &metricsv1.Label{Name: l.Name, Value: l.Value})
	}
	if timer {
		s.hist = &histogram{}
		sub := func(name string) []string { return append(slices.Clone(key), name) }
		s.countKey, s.p50Key, s.p99Key, s.maxKey = sub("count"), sub("p50"), sub("p99"), sub("max")
	}
	return s
}

func (s *series) is(timer bool, key []string, labels []engine.Label) bool {
	return s.timer == timer && slices.Equal(s.key, key) && slices.Equal(s.labels, labels)
}

func (s *series) addCount(v float64) {
	for {
		old := s.sum.Load()
		if s.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (s *series) observe(d time.Duration) { s.hist.add(d) }

// flush sends the series' aggregate since the last flush, if it changed.
// What a failed call was to carry is lost: the host was told part of it.
func (s *series) flush(ctx context.Context, c metricsv1.MetricsClient) error {
	call := func(f func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, metricsCallTimeout)
		defer cancel()
		return f(cctx)
	}
	if !s.timer {
		v := math.Float64frombits(s.sum.Swap(0))
		if v == 0 {
			return nil
		}
		return call(func(ctx context.Context) error {
			_, err := c.IncrCounter(ctx, &metricsv1.IncrCounterRequest{Key: s.key, Val: float32(v), Labels: s.wire})
			return err
		})
	}
	sum := s.hist.take()
	if sum.count == 0 {
		return nil
	}
	if err := call(func(ctx context.Context) error {
		_, err := c.IncrCounter(ctx, &metricsv1.IncrCounterRequest{Key: s.countKey, Val: float32(sum.count), Labels: s.wire})
		return err
	}); err != nil {
		return err
	}
	for _, g := range []struct {
		key []string
		us  uint64
	}{{s.p50Key, sum.p50}, {s.p99Key, sum.p99}, {s.maxKey, sum.max}} {
		if err := call(func(ctx context.Context) error {
			_, err := c.SetGauge(ctx, &metricsv1.SetGaugeRequest{Key: g.key, Val: float32(g.us) / 1000, Labels: s.wire})
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// histogram is a log-linear histogram of durations in microseconds: exact
// below 16 µs, then 16 buckets per power of two (at most 6 % wide), up to
// 2^40 µs (12 days). Adding is two atomic operations.
type histogram struct {
	buckets [histBuckets]atomic.Uint64
	max     atomic.Uint64
}

const (
	histSubBits = 4
	histBuckets = (40-histSubBits)<<histSubBits + 1<<(histSubBits+1)
)

// bucketOf returns the bucket of us: its top histSubBits+1 bits and how far
// they were shifted.
func bucketOf(us uint64) int {
	if us < 1<<(histSubBits+1) {
		return int(us)
	}
	shift := bits.Len64(us) - histSubBits - 1
	return min(shift<<histSubBits+int(us>>shift), histBuckets-1)
}

// bucketMid returns the middle of bucket i, in microseconds.
func bucketMid(i int) uint64 {
	if i < 1<<(histSubBits+1) {
		return uint64(i)
	}
	shift := i>>histSubBits - 1
	top := uint64(i - shift<<histSubBits)
	return top<<shift + (uint64(1)<<shift)/2
}

func (h *histogram) add(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.buckets[bucketOf(us)].Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// summary is a histogram's content at one flush.
type summary struct {
	count         uint64
	p50, p99, max uint64 // microseconds
	counts        [histBuckets]uint64
}

// take empties the histogram and summarizes what it held. An observation
// made during take lands in this summary or the next, never in neither.
func (h *histogram) take() summary {
	var s summary
	for i := range h.buckets {
		if h.buckets[i].Load() == 0 {
			continue
		}
		c := h.buckets[i].Swap(0)
		s.counts[i] = c
		s.count += c
	}
	s.max = h.max.Swap(0)
	if s.count == 0 {
		return s
	}
	s.p50, s.p99 = s.quantile(0.50), s.quantile(0.99)
	return s
}

// quantile returns the middle of the bucket holding the q-quantile, no
// more than the maximum seen.
func (s *summary) quantile(q float64) uint64 {
	rank := uint64(math.Ceil(q * float64(s.count)))
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank && c > 0 {
			if s.max == 0 {
				return bucketMid(i)
			}
			return min(bucketMid(i), s.max)
		}
	}
	return s.max
}
