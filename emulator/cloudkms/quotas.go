package cloudkms

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// QuotaLimits are per-minute request limits per project, by the service's
// three categories ("Quotas" page): read (Get*, List*, GetIamPolicy), write
// (Create*, Update*, Destroy, Restore, SetIamPolicy) and cryptographic
// (AsymmetricSign, GetPublicKey, ...).
type QuotaLimits struct {
	ReadPerMinute   int `json:"read_per_minute,omitempty"`
	WritePerMinute  int `json:"write_per_minute,omitempty"`
	CryptoPerMinute int `json:"crypto_per_minute,omitempty"`
}

// PublishedQuotaLimits are the documented defaults: 300 reads, 60 writes
// and 60,000 cryptographic requests per minute.
func PublishedQuotaLimits() QuotaLimits {
	return QuotaLimits{ReadPerMinute: 300, WritePerMinute: 60, CryptoPerMinute: 60000}
}

type quotaKind int

const (
	quotaNone quotaKind = iota
	quotaRead
	quotaWrite
	quotaCrypto
)

// quotaKindOf classifies a method.
func quotaKindOf(method string) quotaKind {
	switch {
	case method == "AsymmetricSign" || method == "GetPublicKey" || method == "AsymmetricDecrypt" ||
		method == "Encrypt" || method == "Decrypt" || method == "MacSign" || method == "MacVerify":
		return quotaCrypto
	case strings.HasPrefix(method, "Get") || strings.HasPrefix(method, "List") || method == "TestIamPermissions":
		return quotaRead
	case method == "":
		return quotaNone
	}
	return quotaWrite
}

// quotaState counts requests per category and project in one-minute windows
// of the emulator clock (advance the clock a minute to refill).
type quotaState struct {
	mu     sync.Mutex
	on     bool
	limits QuotaLimits
	window time.Time
	used   map[string]int // "<kind>/<project>" -> requests in window
}

func newQuotaState(on bool, l QuotaLimits) *quotaState {
	q := &quotaState{on: on, used: map[string]int{}}
	q.setLimits(l)
	return q
}

func (q *quotaState) setLimits(l QuotaLimits) {
	d := PublishedQuotaLimits()
	if l.ReadPerMinute > 0 {
		d.ReadPerMinute = l.ReadPerMinute
	}
	if l.WritePerMinute > 0 {
		d.WritePerMinute = l.WritePerMinute
	}
	if l.CryptoPerMinute > 0 {
		d.CryptoPerMinute = l.CryptoPerMinute
	}
	q.limits = d
}

// SetQuotas turns the per-minute quotas on or off (off by default). When on,
// a request over its category's limit fails with RESOURCE_EXHAUSTED and an
// ErrorInfo (reason RATE_LIMIT_EXCEEDED) like the service's.
func (s *Server) SetQuotas(on bool) {
	s.quotas.mu.Lock()
	defer s.quotas.mu.Unlock()
	s.quotas.on = on
	s.quotas.used = map[string]int{}
}

// SetQuotaLimits replaces the limits (zero fields: the published value).
func (s *Server) SetQuotaLimits(l QuotaLimits) {
	s.quotas.mu.Lock()
	defer s.quotas.mu.Unlock()
	s.quotas.setLimits(l)
}

// check counts one request of method on project and reports the quota
// error if it is over the limit.
func (q *quotaState) check(method, project string, now time.Time) error {
	kind := quotaKindOf(method)
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.on || kind == quotaNone {
		return nil
	}
	if w := now.Truncate(time.Minute); !w.Equal(q.window) {
		q.window, q.used = w, map[string]int{}
	}
	var limit int
	var metric, limitName, display string
	switch kind {
	case quotaRead:
		limit, metric, limitName, display = q.limits.ReadPerMinute, "read_requests", "ReadRequestsPerMinutePerProject", "Read requests"
	case quotaWrite:
		limit, metric, limitName, display = q.limits.WritePerMinute, "write_requests", "WriteRequestsPerMinutePerProject", "Write requests"
	default:
		limit, metric, limitName, display = q.limits.CryptoPerMinute, "crypto_requests", "CryptoRequestsPerMinutePerProject", "Cryptographic requests"
	}
	key := metric + "/" + project
	q.used[key]++
	if q.used[key] <= limit {
		return nil
	}
	msg := fmt.Sprintf("Quota exceeded for quota metric '%s' and limit '%s per minute' of service 'cloudkms.googleapis.com' for consumer 'project:%s'.", display, display, project)
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: "RATE_LIMIT_EXCEEDED", Domain: "googleapis.com", Metadata: map[string]string{
			"service": "cloudkms.googleapis.com", "consumer": "projects/" + project,
			"quota_metric": "cloudkms.googleapis.com/" + metric, "quota_limit": limitName,
			"quota_limit_value": strconv.Itoa(limit), "quota_location": "global",
		}},
		&errdetails.Help{Links: []*errdetails.Help_Link{{Description: "Request a higher quota limit.", Url: "https://cloud.google.com/docs/quotas/help/request_increase"}}},
	); err == nil {
		st = d
	}
	return st.Err()
}
