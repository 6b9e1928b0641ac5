package keyvault

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Fault describes a failure the emulator injects into matching data-plane
// requests, after authentication (so the SDK's anonymous challenge request is
// never consumed by a fault). It lets tests exercise retry, backoff and
// deadline handling without a real outage.
type Fault struct {
	// Op is the operation name (CreateKey, Sign, GetKey, ListKeys, UpdateKey,
	// DeleteKey, PurgeDeletedKey, ...); "" matches every operation.
	Op string `json:"op,omitempty"`
	// Vault limits the fault to one vault or Managed HSM; "" matches all.
	Vault string `json:"vault,omitempty"`
	// Status is the HTTP status to answer (429, 500, 503, ...); 0 lets the
	// request proceed after Latency.
	Status int `json:"status,omitempty"`
	// Code and Message override the error body; defaults follow the service
	// (Throttled for 429, InternalServerError, ServiceUnavailable, ...).
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	// RetryAfter, when positive, adds a Retry-After header (whole seconds,
	// rounded up), which azcore's retry policy honours.
	RetryAfter Duration `json:"retryAfter,omitempty"`
	// Drop closes the connection without an answer.
	Drop bool `json:"drop,omitempty"`
	// Latency delays the request before it is answered or processed.
	Latency Duration `json:"latency,omitempty"`
	// Malform lets the request run and then damages its answer (see the
	// Malform modes), to test that a client checks what the vault says.
	Malform Malform `json:"malform,omitempty"`
	// Count is how many matching requests the fault affects; 0 means until
	// ClearFaults.
	Count int `json:"count,omitempty"`
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("1.5s") or a number of nanoseconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "250ms".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "250ms" style strings and integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string like \"1s\" or nanoseconds: %w", err)
	}
	*d = Duration(n)
	return nil
}

// faultSet holds the active faults in injection order.
type faultSet struct {
	mu     sync.Mutex
	faults []*faultState
}

type faultState struct {
	Fault
	left int // remaining uses; <0 = unlimited
}

func (fs *faultSet) add(f Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	left := f.Count
	if left <= 0 {
		left = -1
	}
	fs.faults = append(fs.faults, &faultState{Fault: f, left: left})
}

func (fs *faultSet) clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.faults = nil
}

func (fs *faultSet) list() []Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := make([]Fault, 0, len(fs.faults))
	for _, f := range fs.faults {
		g := f.Fault
		if f.left >= 0 {
			g.Count = f.left
		}
		out = append(out, g)
	}
	return out
}

// match consumes and returns the first fault for this request, if any.
// Latency-only faults stack with a following status fault: the total latency
// is returned with the first fault that answers.
func (fs *faultSet) match(vault, op string) (f Fault, ok bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var latency time.Duration
	kept := fs.faults[:0]
	found := false
	for _, st := range fs.faults {
		if !found && (st.Op == "" || strings.EqualFold(st.Op, op)) && (st.Vault == "" || strings.EqualFold(st.Vault, vault)) {
			latency += time.Duration(st.Latency)
			answers := st.Status != 0 || st.Drop || st.Malform != ""
			if answers {
				f, found = st.Fault, true
			}
			ok = true
			if st.left > 0 {
				st.left--
				if st.left == 0 {
					continue
				}
			}
		}
		kept = append(kept, st)
	}
	fs.faults = kept
	f.Latency = Duration(latency)
	return f, ok
}

// InjectFault adds a fault; faults apply in the order they were injected.
func (s *Server) InjectFault(f Fault) { s.faults.add(f) }

// ClearFaults removes every fault.
func (s *Server) ClearFaults() { s.faults.clear() }

// Faults lists the active faults with their remaining counts.
func (s *Server) Faults() []Fault { return s.faults.list() }
