package keymanager

import "time"

// Clock is the engine's time source; tests and benchmarks inject a fake one
// to move through days without waiting.
type Clock interface {
	Now() time.Time
	// After behaves like time.After.
	After(d time.Duration) <-chan time.Time
}

// Schedule sets how often the background passes run.
type Schedule struct {
	// LivenessInterval is how often the liveness pass looks for keys whose
	// Updated time is older than KeepAliveAge.
	LivenessInterval time.Duration
	// KeepAliveAge is the age of Updated at which a served key is kept alive.
	KeepAliveAge time.Duration
	// CleanupInterval is how often the cleanup pass lists the backend.
	CleanupInterval time.Duration
	// StaleAfter is the age of Updated after which another server's key is
	// considered abandoned and retired.
	StaleAfter time.Duration
}

// Default schedule.
const (
	DefaultLivenessInterval = 6 * time.Hour
	DefaultKeepAliveAge     = 24 * time.Hour
	DefaultCleanupInterval  = 24 * time.Hour
	// DefaultStaleAfter matches SPIRE's built-in plugins, so that a trust
	// domain mixing them and kmskeeper agrees on when a server is gone.
	DefaultStaleAfter = 14 * 24 * time.Hour
)

func (s Schedule) withDefaults() Schedule {
	if s.LivenessInterval <= 0 {
		s.LivenessInterval = DefaultLivenessInterval
	}
	if s.KeepAliveAge <= 0 {
		s.KeepAliveAge = DefaultKeepAliveAge
	}
	if s.CleanupInterval <= 0 {
		s.CleanupInterval = DefaultCleanupInterval
	}
	if s.StaleAfter <= 0 {
		s.StaleAfter = DefaultStaleAfter
	}
	return s
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
