package cloudkms

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Tamper corrupts a successful response on its way out, to test that a
// client checks the integrity fields the service documents.
type Tamper string

// Tamper modes.
const (
	TamperNone Tamper = ""
	// TamperSignatureCRC changes AsymmetricSignResponse.signature_crc32c.
	TamperSignatureCRC Tamper = "signature_crc32c"
	// TamperSignature flips a bit of the signature (the CRC still describes
	// the original, as if corrupted in transit).
	TamperSignature Tamper = "signature"
	// TamperVerifiedDigest clears verified_digest_crc32c and
	// verified_data_crc32c, as if the request checksum had not been seen.
	TamperVerifiedDigest Tamper = "verified_digest_crc32c"
	// TamperName replaces the name in AsymmetricSign and GetPublicKey answers
	// with another version of the same key.
	TamperName Tamper = "name"
	// TamperPEMCRC changes PublicKey.pem_crc32c.
	TamperPEMCRC Tamper = "pem_crc32c"
	// TamperPEM flips a character of PublicKey.pem (CRC of the original).
	TamperPEM Tamper = "pem"
)

// Fault is an injected failure. A fault applies to calls of Method (the
// short method name, e.g. "AsymmetricSign", "CreateCryptoKey"; "" for every
// method): it first waits Latency (honouring the caller's deadline), then
// fails with Code and Message if Code is not OK, or lets the call run and
// applies Tamper to its answer. Times > 0 limits how many calls it affects;
// 0 means until ClearFaults.
//
// RetryDelay > 0 (with a Code) attaches a google.rpc.RetryInfo detail
// advising the client to wait that long before trying again, as Google's
// front end does when it throttles; on RESOURCE_EXHAUSTED a
// google.rpc.QuotaFailure naming the project's request quota comes with it
// (AIP-193's details for a quota error). Without it the status carries no
// detail: a client is left to its own backoff.
type Fault struct {
	Method     string        `json:"method,omitempty"`
	Code       codes.Code    `json:"-"`
	Message    string        `json:"message,omitempty"`
	Latency    time.Duration `json:"-"`
	RetryDelay time.Duration `json:"-"`
	Times      int           `json:"times,omitempty"`
	Tamper     Tamper        `json:"tamper,omitempty"`
	// Drop closes the connection the call came on instead of answering
	// (after Latency): the client's stream breaks, and it sees UNAVAILABLE
	// from its own transport. Code is then ignored.
	Drop bool `json:"drop,omitempty"`
}

// faultJSON is Fault's JSON form for the admin API: codes and durations as
// readable strings ("RESOURCE_EXHAUSTED", "250ms").
type faultJSON struct {
	Method     string `json:"method,omitempty"`
	Code       string `json:"code,omitempty"`
	Message    string `json:"message,omitempty"`
	Latency    string `json:"latency,omitempty"`
	RetryDelay string `json:"retry_delay,omitempty"`
	Times      int    `json:"times,omitempty"`
	Tamper     Tamper `json:"tamper,omitempty"`
	Drop       bool   `json:"drop,omitempty"`
}

// MarshalJSON renders the code by name and the durations as Go durations.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Method: f.Method, Message: f.Message, Times: f.Times, Tamper: f.Tamper, Drop: f.Drop}
	if f.Code != codes.OK {
		j.Code = codeName(f.Code)
	}
	if f.Latency > 0 {
		j.Latency = f.Latency.String()
	}
	if f.RetryDelay > 0 {
		j.RetryDelay = f.RetryDelay.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON accepts codes by name ("UNAVAILABLE") or number and
// durations as Go durations ("1.5s").
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Fault{Method: j.Method, Message: j.Message, Times: j.Times, Tamper: j.Tamper, Drop: j.Drop}
	if j.Code != "" {
		c, err := parseCode(j.Code)
		if err != nil {
			return err
		}
		f.Code = c
	}
	if j.Latency != "" {
		d, err := time.ParseDuration(j.Latency)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		f.Latency = d
	}
	if j.RetryDelay != "" {
		d, err := time.ParseDuration(j.RetryDelay)
		switch {
		case err != nil:
			return fmt.Errorf("retry_delay: %w", err)
		case d <= 0:
			return fmt.Errorf("retry_delay %q: the advised delay must be positive", j.RetryDelay)
		case f.Code == codes.OK:
			return fmt.Errorf("retry_delay %q needs a code: it advises when to retry a failed call", j.RetryDelay)
		}
		f.RetryDelay = d
	}
	switch f.Tamper {
	case TamperNone, TamperSignatureCRC, TamperSignature, TamperVerifiedDigest, TamperName, TamperPEMCRC, TamperPEM:
	default:
		return fmt.Errorf("unknown tamper mode %q", f.Tamper)
	}
	return nil
}

// codeName renders a gRPC code the way Google's APIs name it.
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func parseCode(s string) (codes.Code, error) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(s, codeName(c)) || strings.EqualFold(s, c.String()) || s == fmt.Sprint(uint32(c)) {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown gRPC code %q", s)
}

// defaultMessage is what the service's front end says for injected codes.
func defaultMessage(c codes.Code) string {
	switch c {
	case codes.ResourceExhausted:
		return "Quota exceeded (injected fault)."
	case codes.Unavailable:
		return "The service is currently unavailable (injected fault)."
	case codes.DeadlineExceeded:
		return "Deadline exceeded (injected fault)."
	}
	return "Injected fault."
}

// status is the error an injected fault answers a call about resource with.
func (f *Fault) status(resource string) *status.Status {
	msg := f.Message
	if msg == "" {
		msg = defaultMessage(f.Code)
	}
	st := status.New(f.Code, msg)
	if f.RetryDelay <= 0 {
		return st
	}
	details := []protoadapt.MessageV1{&errdetails.RetryInfo{RetryDelay: durationpb.New(f.RetryDelay)}}
	if f.Code == codes.ResourceExhausted {
		project := projectOf(resource)
		details = append(details, &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     "project:" + project,
			Description: "Request rate quota of service 'cloudkms.googleapis.com' exceeded for consumer 'project:" + project + "' (injected fault).",
		}}})
	}
	if d, err := st.WithDetails(details...); err == nil {
		st = d
	}
	return st
}

// faultSet holds the active faults.
type faultSet struct {
	mu     sync.Mutex
	faults []*Fault
}

// InjectFault adds f; faults are matched in the order they were added.
func (s *Server) InjectFault(f Fault) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.faults = append(s.faults.faults, &f)
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.faults = nil
}

// Faults returns the active faults (with their remaining Times).
func (s *Server) Faults() []Fault {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := make([]Fault, 0, len(s.faults.faults))
	for _, f := range s.faults.faults {
		out = append(out, *f)
	}
	return out
}

// take returns the first fault matching method and uses up one of its
// Times.
func (fs *faultSet) take(method string) *Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, f := range fs.faults {
		if f.Method != "" && f.Method != method {
			continue
		}
		cp := *f
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				fs.faults = append(fs.faults[:i:i], fs.faults[i+1:]...)
			}
		}
		return &cp
	}
	return nil
}

// tamper corrupts resp according to mode.
func tamper(mode Tamper, resp any) {
	switch r := resp.(type) {
	case *kmspb.AsymmetricSignResponse:
		switch mode {
		case TamperSignatureCRC:
			r.SignatureCrc32C = wrapperspb.Int64((r.GetSignatureCrc32C().GetValue() + 1) & 0xffffffff)
		case TamperSignature:
			if len(r.Signature) > 0 {
				r.Signature[len(r.Signature)/2] ^= 0x01
			}
		case TamperVerifiedDigest:
			r.VerifiedDigestCrc32C, r.VerifiedDataCrc32C = false, false
		case TamperName:
			r.Name = otherVersion(r.Name)
		}
	case *kmspb.PublicKey:
		switch mode {
		case TamperPEMCRC:
			r.PemCrc32C = wrapperspb.Int64((r.GetPemCrc32C().GetValue() + 1) & 0xffffffff)
		case TamperPEM:
			if i := strings.Index(r.Pem, "\n"); i >= 0 && len(r.Pem) > i+5 {
				b := []byte(r.Pem)
				b[i+5] ^= 0x01
				r.Pem = string(b)
			}
		case TamperName:
			r.Name = otherVersion(r.Name)
		}
	}
}

// otherVersion returns a different version name of the same key.
func otherVersion(name string) string {
	key, n, err := parseVersionName(name)
	if err != nil {
		return name + "0"
	}
	return versionName(key, n+1)
}

// counters counts requests per method.
type counters struct {
	mu sync.Mutex
	m  map[string]int
}

// Counts returns how many requests each method received (including the
// ones that failed), keyed by short method name ("AsymmetricSign").
func (s *Server) Counts() map[string]int {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	out := make(map[string]int, len(s.counts.m))
	for k, v := range s.counts.m {
		out[k] = v
	}
	return out
}

// ResetCounts sets every counter back to zero and empties the request log.
func (s *Server) ResetCounts() {
	s.counts.mu.Lock()
	s.counts.m = map[string]int{}
	s.counts.mu.Unlock()
	s.requests.mu.Lock()
	s.requests.reqs = nil
	s.requests.mu.Unlock()
}

func (c *counters) inc(method string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[method]++
}

// Request is one call the emulator received, as Requests lists it.
type Request struct {
	// Method is the short method name ("AsymmetricSign").
	Method string `json:"method"`
	// Resource is the name the request is about (name, parent or resource).
	Resource string `json:"resource,omitempty"`
	// Received is when the call arrived, on the host's clock (not the
	// emulator clock, which tests move): with its monotonic reading
	// in-process, so that the time between two requests can be measured.
	Received time.Time `json:"received"`
	// Code is the answer's gRPC code.
	Code codes.Code `json:"-"`
	// Injected reports that an injected fault answered the call.
	Injected bool `json:"injected,omitempty"`
}

// requestJSON is Request's JSON form: the code by name.
type requestJSON struct {
	Method   string    `json:"method"`
	Resource string    `json:"resource,omitempty"`
	Received time.Time `json:"received"`
	Code     string    `json:"code"`
	Injected bool      `json:"injected,omitempty"`
}

// MarshalJSON renders the code by name ("RESOURCE_EXHAUSTED").
func (r Request) MarshalJSON() ([]byte, error) {
	return json.Marshal(requestJSON{Method: r.Method, Resource: r.Resource, Received: r.Received, Code: codeName(r.Code), Injected: r.Injected})
}

// UnmarshalJSON reads the code by name or number.
func (r *Request) UnmarshalJSON(b []byte) error {
	var j requestJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	c, err := parseCode(j.Code)
	if err != nil {
		return err
	}
	*r = Request{Method: j.Method, Resource: j.Resource, Received: j.Received, Code: c, Injected: j.Injected}
	return nil
}

// maxRequests bounds the request log: the oldest are dropped first.
const maxRequests = 10000

// requestLog keeps the latest requests in order of arrival.
type requestLog struct {
	mu   sync.Mutex
	reqs []Request
}

func (l *requestLog) add(r Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.reqs) == maxRequests {
		l.reqs = append(l.reqs[:0], l.reqs[maxRequests/2:]...)
	}
	l.reqs = append(l.reqs, r)
}

// Requests returns the latest requests the emulator received (at most
// 10,000, older ones dropped), in order of arrival, with when each arrived
// and how it was answered: a test can check that a client waited between
// two attempts as an answer advised (Fault.RetryDelay).
func (s *Server) Requests() []Request {
	s.requests.mu.Lock()
	defer s.requests.mu.Unlock()
	out := make([]Request, len(s.requests.reqs))
	copy(out, s.requests.reqs)
	return out
}

// sortedMethods is used by the CLI/admin output for stable listings.
func sortedMethods(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
