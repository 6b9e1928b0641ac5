package engine

import "time"

// Metrics receives the engine's measurements. The plugin forwards them to
// SPIRE's Metrics host service so they appear in SPIRE's telemetry sinks.
// Implementations must not block, and must not modify or keep key and
// labels (copy them): the signing path passes the same slices every time.
type Metrics interface {
	IncrCounter(key []string, val float32, labels ...Label)
	MeasureSince(key []string, start time.Time, labels ...Label)
}

// Label is a metric label.
type Label struct {
	Name, Value string
}
