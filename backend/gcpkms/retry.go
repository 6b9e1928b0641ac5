package gcpkms

import (
	"context"
	"strings"
	"time"

	"github.com/googleapis/gax-go/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
)

// retryClass says which failures of a call may be retried.
type retryClass int

const (
	// idempotent calls (reads, label updates, destructions, signing) retry
	// RESOURCE_EXHAUSTED, UNAVAILABLE and a DEADLINE_EXCEEDED the service
	// answered until the budget ends, and INTERNAL up to
	// maxInternalRetries times.
	idempotent retryClass = iota
	// creating calls retry only RESOURCE_EXHAUSTED: the request was refused
	// before anything was made, whereas an UNAVAILABLE or INTERNAL answer
	// may hide a version that was created, and a second try would create
	// another.
	creating
	// awaitingKey is idempotent and also waits out a version that is still
	// PENDING_GENERATION (GetPublicKey right after a create).
	awaitingKey
)

// backoffs are the pauses between retries of each kind.
type backoffs struct {
	quota, unavailable, internal, pending gax.Backoff
}

// defaultBackoffs: quota windows are a minute long and the service advises
// "retrying the next second"; transient failures clear in milliseconds; HSM
// RSA keys take seconds to generate.
func defaultBackoffs() backoffs {
	return backoffs{
		quota:       gax.Backoff{Initial: time.Second, Max: 8 * time.Second, Multiplier: 2},
		unavailable: gax.Backoff{Initial: 100 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2},
		internal:    gax.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2},
		pending:     gax.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second, Multiplier: 1.6},
	}
}

// maxInternalRetries bounds the retries of INTERNAL on one idempotent call.
// Google's generated KMS client configuration retried INTERNAL (with
// UNAVAILABLE and DEADLINE_EXCEEDED) on its idempotent methods, and a
// passing server error clears in well under a second; one that does not
// clear after a few tries is an incident, and the rest of SPIRE's budget
// is better left to SPIRE's own retry than spent on it.
const maxInternalRetries = 3

// retryMargin is kept free before the deadline for the last attempt itself.
const retryMargin = 250 * time.Millisecond

// callOptions returns the gax options of one call of method: retries of
// class, until shortly before ctx's deadline, counted in the metrics. They
// replace the client's defaults (which retry only UNAVAILABLE and
// DEADLINE_EXCEEDED, for up to 60 s, past SPIRE's 30 s, and never INTERNAL).
func (b *Backend) callOptions(ctx context.Context, method string, class retryClass) []gax.CallOption {
	deadline, _ := ctx.Deadline()
	return []gax.CallOption{gax.WithRetry(func() gax.Retryer {
		return &retryer{method: method, class: class, deadline: deadline, metrics: b.metrics, backoffs: b.backoffs}
	})}
}

// retryer decides, per failure of one call, whether and when to try again.
type retryer struct {
	method   string
	class    retryClass
	deadline time.Time
	metrics  engine.Metrics
	backoffs // copied per call: each call backs off from the start
	// internals counts the INTERNAL answers retried so far.
	internals int
}

// Retry implements gax.Retryer.
func (r *retryer) Retry(err error) (time.Duration, bool) {
	var bo *gax.Backoff
	reason := ""
	switch code := status.Code(err); {
	case code == codes.ResourceExhausted:
		bo, reason = &r.quota, "resource_exhausted"
	case code == codes.Unavailable && r.class != creating:
		bo, reason = &r.unavailable, "unavailable"
	case code == codes.DeadlineExceeded && r.class != creating:
		// The service ran out of its own time; the call's budget (checked
		// below) may leave room for another try. A creation is not tried
		// again: the first may have made the version.
		bo, reason = &r.unavailable, "deadline_exceeded"
	case code == codes.Internal && r.class != creating && r.internals < maxInternalRetries:
		bo, reason = &r.internal, "internal"
	case r.class == awaitingKey && isPendingGeneration(err):
		bo, reason = &r.pending, "pending_generation"
	default:
		return 0, false
	}
	pause := bo.Pause()
	if hint := retryDelay(err); hint > pause {
		pause = hint
	}
	if !r.deadline.IsZero() && time.Until(r.deadline) < pause+retryMargin {
		return 0, false
	}
	if bo == &r.internal {
		r.internals++
	}
	r.metrics.IncrCounter([]string{"kmskeeper", "gcpkms", "retries"}, 1,
		engine.Label{Name: "method", Value: r.method}, engine.Label{Name: "reason", Value: reason})
	return pause, true
}

// isPendingGeneration reports whether err says a version is still being
// generated: FAILED_PRECONDITION with a KEY_PENDING_GENERATION violation, or
// the service's message naming the state.
func isPendingGeneration(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			for _, v := range pf.GetViolations() {
				if v.GetType() == "KEY_PENDING_GENERATION" {
					return true
				}
			}
		}
	}
	return strings.Contains(st.Message(), "PENDING_GENERATION")
}

// retryDelay returns the service's RetryInfo hint, if any.
func retryDelay(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// pace waits for the write pacer before a background write (liveness
// labels, destructions), so that a pass over many keys stays under the
// project's 60 writes a minute and leaves room for key creation.
func (b *Backend) pace(ctx context.Context, what string) error {
	return b.writes.wait(ctx, what)
}
