package gcpkms

import (
	"errors"
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kmskeeper/kmskeeper/engine"
)

func pendingError() error {
	st, _ := status.New(codes.FailedPrecondition, "v is not enabled, current state is: PENDING_GENERATION.").
		WithDetails(&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{Type: "KEY_PENDING_GENERATION"}}})
	return st.Err()
}

func TestRetryer(t *testing.T) {
	bo := backoffs{
		quota:       gax.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		unavailable: gax.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		internal:    gax.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
		pending:     gax.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond},
	}
	hinted, _ := status.New(codes.ResourceExhausted, "quota").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(300 * time.Millisecond)})
	tests := []struct {
		name     string
		class    retryClass
		err      error
		budget   time.Duration
		retry    bool
		minPause time.Duration
	}{
		{"quota", idempotent, status.Error(codes.ResourceExhausted, "quota"), time.Minute, true, 0},
		{"quota on a creation", creating, status.Error(codes.ResourceExhausted, "quota"), time.Minute, true, 0},
		{"unavailable", idempotent, status.Error(codes.Unavailable, "down"), time.Minute, true, 0},
		{"unavailable on a creation", creating, status.Error(codes.Unavailable, "down"), time.Minute, false, 0},
		{"deadline exceeded by the service", idempotent, status.Error(codes.DeadlineExceeded, "Deadline exceeded."), time.Minute, true, 0},
		{"deadline exceeded on a creation", creating, status.Error(codes.DeadlineExceeded, "Deadline exceeded."), time.Minute, false, 0},
		{"deadline exceeded at the budget's end", idempotent, status.Error(codes.DeadlineExceeded, "context deadline exceeded"), 100 * time.Millisecond, false, 0},
		{"internal", idempotent, status.Error(codes.Internal, "oops"), time.Minute, true, 0},
		{"internal while awaiting a key", awaitingKey, status.Error(codes.Internal, "oops"), time.Minute, true, 0},
		{"internal on a creation", creating, status.Error(codes.Internal, "oops"), time.Minute, false, 0},
		{"internal past the budget", idempotent, status.Error(codes.Internal, "oops"), 100 * time.Millisecond, false, 0},
		{"pending while awaiting a key", awaitingKey, pendingError(), time.Minute, true, 0},
		{"pending elsewhere", idempotent, pendingError(), time.Minute, false, 0},
		{"disabled", awaitingKey, status.Error(codes.FailedPrecondition, "current state is: DISABLED."), time.Minute, false, 0},
		{"permission", idempotent, status.Error(codes.PermissionDenied, "no"), time.Minute, false, 0},
		{"not a status", idempotent, errors.New("boom"), time.Minute, false, 0},
		{"RetryInfo hint", idempotent, hinted.Err(), time.Minute, true, 300 * time.Millisecond},
		{"hint past the budget", idempotent, hinted.Err(), 400 * time.Millisecond, false, 0},
		{"budget spent", idempotent, status.Error(codes.Unavailable, "down"), 100 * time.Millisecond, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &retryer{method: "M", class: tt.class, deadline: time.Now().Add(tt.budget), metrics: engine.NopMetrics{}, backoffs: bo}
			pause, ok := r.Retry(tt.err)
			if ok != tt.retry || (ok && pause < tt.minPause) {
				t.Errorf("Retry = %v, %v; want retry=%v pause>=%v", pause, ok, tt.retry, tt.minPause)
			}
		})
	}
}

// TestRetryerBoundsInternal checks that one call retries INTERNAL at most
// maxInternalRetries times, each counted with reason "internal", and that
// other codes are still retried after that.
func TestRetryerBoundsInternal(t *testing.T) {
	fast := gax.Backoff{Initial: time.Millisecond, Max: time.Millisecond}
	metrics := &counter{}
	r := &retryer{method: "M", class: idempotent, deadline: time.Now().Add(time.Minute), metrics: metrics,
		backoffs: backoffs{quota: fast, unavailable: fast, internal: fast, pending: fast}}
	internal := status.Error(codes.Internal, "oops")
	for i := range maxInternalRetries {
		if _, ok := r.Retry(internal); !ok {
			t.Fatalf("INTERNAL answer %d was not retried", i+1)
		}
	}
	if _, ok := r.Retry(internal); ok {
		t.Errorf("INTERNAL answer %d was retried; at most %d are", maxInternalRetries+1, maxInternalRetries)
	}
	if _, ok := r.Retry(status.Error(codes.Unavailable, "down")); !ok {
		t.Error("UNAVAILABLE after the INTERNAL retries ran out was not retried")
	}
	if got := metrics.get("retries,method=M,reason=internal"); got != maxInternalRetries {
		t.Errorf("retries counted with reason internal = %v, want %d", got, maxInternalRetries)
	}
}

func TestNames(t *testing.T) {
	// hex(SHA-1("example.org")), as SPIRE's gcp_kms labels keys.
	if got := trustDomainLabel("example.org"); got != "20116dfd6774a9e7b32eddfea3f6cb094e38fc3f" {
		t.Errorf("trustDomainLabel = %q", got)
	}
	tests := []struct {
		key, server, keyID string
		ok                 bool
	}{
		{testRing + "/cryptoKeys/spire-key-a-b-x509-CA-A", "a-b", "x509-CA-A", true},
		{testRing + "/cryptoKeys/spire-key-a-b-x509-CA-A", "a", "b-x509-CA-A", true},
		{testRing + "/cryptoKeys/spire-key-a-b-x509-CA-A", "c", "", false},
		{testRing + "/cryptoKeys/spire-key-a-", "a", "", false},
		{testRing + "/cryptoKeys/other", "", "", false},
	}
	for _, tt := range tests {
		id, ok := spireKeyID(tt.key, tt.server)
		if id != tt.keyID || ok != tt.ok {
			t.Errorf("spireKeyID(%s, %s) = %q, %v; want %q, %v", tt.key, tt.server, id, ok, tt.keyID, tt.ok)
		}
	}
	for _, ring := range []string{testRing, "projects/example.com:acme/locations/us-east1/keyRings/spire_ring", "projects/123456789/locations/global/keyRings/r"} {
		if err := checkKeyRing(ring); err != nil {
			t.Errorf("checkKeyRing(%s): %v", ring, err)
		}
	}
	for _, ring := range []string{"", "projects/p/locations/l/keyRings/", "projects/p/locations/l/keyRings/r/cryptoKeys/k", "keyRings/r"} {
		if checkKeyRing(ring) == nil {
			t.Errorf("checkKeyRing(%q) accepted", ring)
		}
	}
}
