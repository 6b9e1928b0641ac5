package azurekv

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Retry tuning. azcore's defaults (3 retries, 800 ms doubling, Retry-After
// honoured up to 60 s) can outlast SPIRE's 30 s deadline; the engine gives
// every call a context ending before it, so here retries are many and short
// and the context decides when to stop. Key Vault's throttling guidance asks
// for exponential back-off from about a second.
const (
	maxRetries    = 10
	retryDelay    = 500 * time.Millisecond
	maxRetryDelay = 30 * time.Second // above any budget: a long Retry-After is judged by retryPolicy
)

// retryOptions are the azcore retry options of every vault client.
func retryOptions() policy.RetryOptions {
	return policy.RetryOptions{
		MaxRetries:    maxRetries,
		RetryDelay:    retryDelay,
		MaxRetryDelay: maxRetryDelay,
		StatusCodes: []int{
			http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		},
	}
}

// call describes one backend operation for the per-try policy and for error
// messages: which vault operation on which key, and what the vault answered
// to the last try (a deadline that ends a run of 429s is a throttling
// failure, not a timeout).
type call struct {
	op   string // the Key Vault operation (CreateKey, Sign, ...)
	key  string // the key name, "" for listing
	perm string // the key permission it needs (create, sign, ...)

	lastStatus int
	lastErr    error // the last try's transport error (no answer), if any
	throttled  int
	tries      int
}

type callKey struct{}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// budgetError ends the retries when the vault asks to wait longer than the
// budget left: waiting would only end in a deadline error.
type budgetError struct {
	status     int
	retryAfter time.Duration
	left       time.Duration
}

func (e *budgetError) Error() string {
	return fmt.Sprintf("the vault answered %d and asked to retry after %s, but only %s of the call's budget was left", e.status, e.retryAfter.Round(time.Millisecond), e.left.Round(time.Millisecond))
}

// NonRetriable tells azcore's retry policy to stop.
func (e *budgetError) NonRetriable() {}

// tryPolicy runs once per try (azcore per-retry policy): it records what the
// vault answered, counts throttled answers in the metrics, and stops the
// retries early when a Retry-After hint is past the deadline.
type tryPolicy struct {
	metrics engine.Metrics
}

func (p *tryPolicy) Do(req *policy.Request) (*http.Response, error) {
	resp, err := req.Next()
	ctx := req.Raw().Context()
	c, _ := ctx.Value(callKey{}).(*call)
	switch {
	case c == nil:
	case resp != nil && err == nil:
		c.tries++
		c.lastStatus, c.lastErr = resp.StatusCode, nil
	case err != nil && ctx.Err() == nil:
		// No answer: the vault could not be reached. A try cut short by
		// the deadline says nothing about that, and keeps what the tries
		// before it found.
		c.tries++
		c.lastStatus, c.lastErr = 0, err
	case err != nil:
		c.tries++
	}
	if err != nil || resp == nil {
		return resp, err
	}
	op := "unknown"
	if c != nil {
		op = c.op
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		if c != nil {
			c.throttled++
		}
		p.metrics.IncrCounter([]string{"kmskeeper", "azure", "throttled"}, 1,
			engine.Label{Name: "operation", Value: op})
	case resp.StatusCode >= 500:
		p.metrics.IncrCounter([]string{"kmskeeper", "azure", "server_errors"}, 1,
			engine.Label{Name: "operation", Value: op})
	default:
		return resp, nil
	}
	if after := retryAfter(resp.Header); after > 0 {
		if d, ok := ctx.Deadline(); ok {
			if left := time.Until(d); after >= left {
				return resp, &budgetError{status: resp.StatusCode, retryAfter: after, left: left}
			}
		}
	}
	return resp, nil
}

// retryAfter reads the delay hints azcore honours, in its order:
// retry-after-ms, x-ms-retry-after-ms, then Retry-After in seconds or as an
// HTTP date.
func retryAfter(h http.Header) time.Duration {
	for _, name := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if v := h.Get(name); v != "" {
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}
