package memory

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Phase says when a Fault acts on an operation.
type Phase string

// The phases of an operation a Fault can act in.
const (
	// PhaseBefore acts before the operation takes effect: a crash during
	// its latency leaves the store unchanged.
	PhaseBefore Phase = ""
	// PhaseAfter acts once the operation took effect, before its answer
	// reaches the caller: a crash during its latency loses only the answer.
	PhaseAfter Phase = "after"
)

// Fault is a failure injected into the operations of every process sharing
// a file store, like a cloud's outage: tests of the built binary use it to
// slow, fail or hold operations (and kill the process while one is held).
type Fault struct {
	// Op is the operation ("List", "Create", "Fetch", "Sign", "KeepAlive",
	// "Retire"); "" matches every operation.
	Op string `json:"op,omitempty"`
	// Phase is when the fault acts.
	Phase Phase `json:"phase,omitempty"`
	// Latency delays the operation (or its answer, for PhaseAfter); the
	// caller's context still ends it.
	Latency time.Duration `json:"latency,omitempty"`
	// Code, when not OK, fails the operation with this gRPC code after the
	// latency.
	Code codes.Code `json:"code,omitempty"`
	// Count is how many operations the fault affects; 0 means until
	// ClearFaults.
	Count int `json:"count,omitempty"`
	// Hits counts the operations the fault affected so far; tests wait on it
	// to know that an operation has reached the fault.
	Hits int `json:"hits,omitempty"`
}

// InjectFault adds a fault; the first matching fault acts on an operation.
func (s *Store) InjectFault(f Fault) error {
	return s.withFile(true, func() error {
		f.Hits = 0
		s.state.Faults = append(s.state.Faults, &f)
		return nil
	})
}

// ClearFaults removes every fault.
func (s *Store) ClearFaults() error {
	return s.withFile(true, func() error {
		s.state.Faults = nil
		return nil
	})
}

// Faults returns the faults still active, with their hit counts.
func (s *Store) Faults() []Fault {
	var out []Fault
	s.withFile(false, func() error {
		for _, f := range s.state.Faults {
			out = append(out, *f)
		}
		return nil
	})
	return out
}

// Advance moves the store's clock forward by d for every process sharing it.
func (s *Store) Advance(d time.Duration) error {
	return s.withFile(true, func() error {
		s.state.ClockOffset += d
		return nil
	})
}

// Now returns the store's current time (the system clock plus the offset
// Advance added).
func (s *Store) Now() time.Time {
	var now time.Time
	s.withFile(false, func() error {
		now = s.cloudNow()
		return nil
	})
	return now
}

// cloudNow is the store's time; the caller holds the state loaded.
func (s *Store) cloudNow() time.Time { return s.now().Add(s.state.ClockOffset) }

// fault applies the first fault matching op and phase: it waits its latency
// (or until ctx ends) and returns its error.
func (s *Store) fault(ctx context.Context, op string, phase Phase) error {
	if s.path == "" {
		return nil
	}
	var hit *Fault
	err := s.withFile(true, func() error {
		for _, f := range s.state.Faults {
			if (f.Op != "" && f.Op != op) || f.Phase != phase || (f.Count > 0 && f.Hits >= f.Count) {
				continue
			}
			f.Hits++
			c := *f
			hit = &c // spent faults stay listed so that tests can read their hits
			return nil
		}
		return errNoFault
	})
	if err == errNoFault {
		return nil
	}
	if err != nil {
		return err
	}
	if hit.Latency > 0 {
		t := time.NewTimer(hit.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if hit.Code != codes.OK {
		return engine.Errorf(hit.Code, "memory backend: injected fault on %s: %s", op, hit.Code)
	}
	return nil
}

// errNoFault leaves the state unwritten when no fault matches.
var errNoFault = faultError("no fault")

type faultError string

func (e faultError) Error() string { return string(e) }
