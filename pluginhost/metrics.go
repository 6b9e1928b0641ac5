package pluginhost

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/kmskeeper/kmskeeper/engine"
	metricsv1 "github.com/kmskeeper/kmskeeper/proto/spire/hostservice/common/metrics/v1"
)

// MetricsServiceName is the Metrics host service SPIRE offers a server
// KeyManager in Init.
const MetricsServiceName = "spire.hostservice.common.metrics.v1.Metrics"

// Metric is one call the plugin made to the Metrics host service.
type Metric struct {
	// Call is the RPC: SetGauge, EmitKey, IncrCounter, AddSample or
	// MeasureSince.
	Call string
	// Key is the metric key, as SPIRE's telemetry joins it with dots.
	Key []string
	// Value is val; zero for MeasureSince.
	Value float32
	// Start is MeasureSince's start time; zero for the other calls.
	Start time.Time
	// Labels are the metric's labels in the order sent.
	Labels []engine.Label
	// Received is when the host got the call.
	Received time.Time
}

// Name returns the key joined with dots ("kmskeeper.sign.latency").
func (m Metric) Name() string { return strings.Join(m.Key, ".") }

// Label returns the value of the named label, or "" if it is absent.
func (m Metric) Label(name string) string {
	for _, l := range m.Labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// String formats the metric for test failure messages.
func (m Metric) String() string {
	return fmt.Sprintf("%s %s=%v %v", m.Call, m.Name(), m.Value, m.Labels)
}

// metricsServer is the Metrics host service: it records every call.
type metricsServer struct {
	metricsv1.UnimplementedMetricsServer
	j *journal[Metric]
}

func (s *metricsServer) record(call string, key []string, val float32, start int64, labels []*metricsv1.Label) {
	m := Metric{Call: call, Key: key, Value: val, Received: time.Now()}
	if start != 0 {
		m.Start = time.Unix(0, start)
	}
	for _, l := range labels {
		m.Labels = append(m.Labels, engine.Label{Name: l.GetName(), Value: l.GetValue()})
	}
	s.j.add(m)
}

func (s *metricsServer) SetGauge(_ context.Context, r *metricsv1.SetGaugeRequest) (*emptypb.Empty, error) {
	s.record("SetGauge", r.GetKey(), r.GetVal(), 0, r.GetLabels())
	return &emptypb.Empty{}, nil
}

func (s *metricsServer) EmitKey(_ context.Context, r *metricsv1.EmitKeyRequest) (*emptypb.Empty, error) {
	s.record("EmitKey", r.GetKey(), r.GetVal(), 0, nil)
	return &emptypb.Empty{}, nil
}

func (s *metricsServer) IncrCounter(_ context.Context, r *metricsv1.IncrCounterRequest) (*emptypb.Empty, error) {
	s.record("IncrCounter", r.GetKey(), r.GetVal(), 0, r.GetLabels())
	return &emptypb.Empty{}, nil
}

func (s *metricsServer) AddSample(_ context.Context, r *metricsv1.AddSampleRequest) (*emptypb.Empty, error) {
	s.record("AddSample", r.GetKey(), r.GetVal(), 0, r.GetLabels())
	return &emptypb.Empty{}, nil
}

func (s *metricsServer) MeasureSince(_ context.Context, r *metricsv1.MeasureSinceRequest) (*emptypb.Empty, error) {
	s.record("MeasureSince", r.GetKey(), 0, r.GetTime(), r.GetLabels())
	return &emptypb.Empty{}, nil
}
