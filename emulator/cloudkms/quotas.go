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

// QuotaModel is how the emulator counts and enforces quotas.
type QuotaModel string

const (
	// QuotaPerMinute is the superseded regime, and the zero value's: one
	// budget per project for all locations, counted in fixed one-minute
	// windows and enforced hard (every request over the limit is
	// RESOURCE_EXHAUSTED). Tests that need a throttle that always bites
	// use it.
	QuotaPerMinute QuotaModel = "per-minute"
	// QuotaRegional is the model Cloud KMS documents since February 2026:
	// each project has a budget per location (region); HSM cryptographic
	// requests are counted per second, other requests per minute; and
	// enforcement is soft: a request over its limit is served while the
	// location has spare capacity, and refused with RESOURCE_EXHAUSTED only
	// while it is overloaded (SetQuotaOverloaded). The dynamic adjustment
	// of limits is not modelled. `kmskeeper emulator gcp --quotas` uses it
	// unless --quota-model says otherwise.
	QuotaRegional QuotaModel = "regional"
)

// QuotaLimits are request limits per project (per location in the
// regional model), by the service's categories ("Quotas" page): read
// (Get*, List*, GetIamPolicy), write (Create*, Update*, Destroy, Restore,
// SetIamPolicy) and cryptographic (AsymmetricSign, GetPublicKey, ...) per
// minute; in the regional model, cryptographic requests on HSM keys count
// against HSMPerSecond instead.
type QuotaLimits struct {
	ReadPerMinute   int `json:"read_per_minute,omitempty"`
	WritePerMinute  int `json:"write_per_minute,omitempty"`
	CryptoPerMinute int `json:"crypto_per_minute,omitempty"`
	HSMPerSecond    int `json:"hsm_per_second,omitempty"`
}

// PublishedQuotaLimits are the documented defaults: 300 reads, 60 writes
// and 60,000 cryptographic requests per minute. The HSM limit per second
// is the emulator's choice (50): the documentation gives it per project
// and region in the console only.
func PublishedQuotaLimits() QuotaLimits {
	return QuotaLimits{ReadPerMinute: 300, WritePerMinute: 60, CryptoPerMinute: 60000, HSMPerSecond: 50}
}

type quotaKind int

const (
	quotaNone quotaKind = iota
	quotaRead
	quotaWrite
	quotaCrypto
	// quotaHSM is a cryptographic request on an HSM key in the regional
	// model.
	quotaHSM
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

// quotaState counts requests per category, project (and location, in the
// regional model) in windows of the emulator clock: a minute, or a second
// for HSM requests (advance the clock to refill).
type quotaState struct {
	mu         sync.Mutex
	on         bool
	model      QuotaModel
	overloaded bool
	limits     QuotaLimits
	used       map[string]int // "<window start>/<kind>/<project>[/<location>]" -> requests in window
}

func newQuotaState(on bool, model QuotaModel, l QuotaLimits) *quotaState {
	q := &quotaState{on: on, used: map[string]int{}}
	q.setModel(model)
	q.setLimits(l)
	return q
}

func (q *quotaState) setModel(m QuotaModel) {
	if m == "" {
		m = QuotaPerMinute
	}
	q.model = m
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
	if l.HSMPerSecond > 0 {
		d.HSMPerSecond = l.HSMPerSecond
	}
	q.limits = d
}

// ParseQuotaModel reads a quota model's name ("" is the zero value's).
func ParseQuotaModel(s string) (QuotaModel, error) {
	switch m := QuotaModel(s); m {
	case "", QuotaPerMinute, QuotaRegional:
		return m, nil
	}
	return "", fmt.Errorf("quota model %q: want %q or %q", s, QuotaRegional, QuotaPerMinute)
}

// SetQuotas turns the quotas on or off (off by default). When on, a request
// over its category's limit fails with RESOURCE_EXHAUSTED and an ErrorInfo
// (reason RATE_LIMIT_EXCEEDED) like the service's: always in the per-minute
// model, while the emulator is overloaded in the regional one.
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

// SetQuotaModel chooses how quotas are counted and enforced ("" is
// QuotaPerMinute).
func (s *Server) SetQuotaModel(m QuotaModel) {
	s.quotas.mu.Lock()
	defer s.quotas.mu.Unlock()
	s.quotas.setModel(m)
	s.quotas.used = map[string]int{}
}

// SetQuotaOverloaded says whether the service is short of capacity: in the
// regional model, requests over their limit are refused only then.
func (s *Server) SetQuotaOverloaded(overloaded bool) {
	s.quotas.mu.Lock()
	defer s.quotas.mu.Unlock()
	s.quotas.overloaded = overloaded
}

// quotaRule is how one request is counted.
type quotaRule struct {
	limit   int
	window  time.Duration
	metric  string // the quota metric, after cloudkms.googleapis.com/
	limitID string // the quota limit's name
	display string // the metric's display name
	per     string // "minute" or "second"
}

// rule returns how a request of kind is counted in the current model.
func (q *quotaState) rule(kind quotaKind) quotaRule {
	scope := "PerProject"
	if q.model == QuotaRegional {
		scope = "PerProjectPerRegion"
	}
	switch kind {
	case quotaRead:
		return quotaRule{q.limits.ReadPerMinute, time.Minute, "read_requests", "ReadRequestsPerMinute" + scope, "Read requests", "minute"}
	case quotaWrite:
		return quotaRule{q.limits.WritePerMinute, time.Minute, "write_requests", "WriteRequestsPerMinute" + scope, "Write requests", "minute"}
	case quotaHSM:
		return quotaRule{q.limits.HSMPerSecond, time.Second, "hsm_asymmetric_requests", "HsmAsymmetricRequestsPerSecond" + scope, "HSM asymmetric requests", "second"}
	}
	return quotaRule{q.limits.CryptoPerMinute, time.Minute, "crypto_requests", "CryptoRequestsPerMinute" + scope, "Cryptographic requests", "minute"}
}

// check counts one request of method on resource and reports the quota
// error if it is over the limit and the model refuses it. hsm reports
// whether resource is an HSM key (asked only for cryptographic requests in
// the regional model). overrun reports a request over its limit that was
// served anyway (soft enforcement).
func (q *quotaState) check(method, resource string, now time.Time, hsm func(string) bool) (overrun bool, err error) {
	kind := quotaKindOf(method)
	q.mu.Lock()
	on, regional := q.on, q.model == QuotaRegional
	q.mu.Unlock()
	if !on || kind == quotaNone {
		return false, nil
	}
	if regional && kind == quotaCrypto && hsm(resource) {
		kind = quotaHSM
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	project, location := projectOf(resource), "global"
	if regional {
		location = locationOf(resource)
	}
	r := q.rule(kind)
	window := now.Truncate(r.window)
	key := fmt.Sprintf("%d/%s/%s/%s", window.UnixNano(), r.metric, project, location)
	if !regional {
		key = fmt.Sprintf("%d/%s/%s", window.UnixNano(), r.metric, project)
	}
	// Windows other than the current ones are done with.
	for k := range q.used {
		if at, _, _ := strings.Cut(k, "/"); at != strconv.FormatInt(now.Truncate(time.Minute).UnixNano(), 10) && at != strconv.FormatInt(now.Truncate(time.Second).UnixNano(), 10) {
			delete(q.used, k)
		}
	}
	q.used[key]++
	if q.used[key] <= r.limit {
		return false, nil
	}
	if regional && !q.overloaded {
		return true, nil
	}
	limitText := r.display + " per " + r.per
	if regional {
		limitText += " per region"
	}
	msg := fmt.Sprintf("Quota exceeded for quota metric '%s' and limit '%s' of service 'cloudkms.googleapis.com' for consumer 'project:%s'.", r.display, limitText, project)
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: "RATE_LIMIT_EXCEEDED", Domain: "googleapis.com", Metadata: map[string]string{
			"service": "cloudkms.googleapis.com", "consumer": "projects/" + project,
			"quota_metric": "cloudkms.googleapis.com/" + r.metric, "quota_limit": r.limitID,
			"quota_limit_value": strconv.Itoa(r.limit), "quota_location": location,
		}},
		&errdetails.Help{Links: []*errdetails.Help_Link{{Description: "Request a higher quota limit.", Url: "https://cloud.google.com/docs/quotas/help/request_increase"}}},
	); err == nil {
		st = d
	}
	return false, st.Err()
}
