package cloudkms

import (
	"context"
	"crypto"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// details returns the RetryInfo and QuotaFailure details of err.
func details(err error) (*errdetails.RetryInfo, *errdetails.QuotaFailure, int) {
	st := status.Convert(err)
	var ri *errdetails.RetryInfo
	var qf *errdetails.QuotaFailure
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			ri = d
		case *errdetails.QuotaFailure:
			qf = d
		}
	}
	return ri, qf, len(st.Details())
}

// TestFaultRetryDelay injects faults advising a retry delay: the status
// carries a google.rpc.RetryInfo with the delay (and, on RESOURCE_EXHAUSTED, a
// QuotaFailure naming the project), a fault without one carries no detail, and
// the request log shows when each attempt arrived and how it was answered.
func TestFaultRetryDelay(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	v1 := key.GetName() + "/cryptoKeyVersions/1"
	sign := func(opts ...gax.CallOption) error {
		_, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: v1, Digest: digestFor(crypto.SHA256, []byte("x"))}, opts...)
		return err
	}

	t.Run("RESOURCE_EXHAUSTED with a delay", func(t *testing.T) {
		s.ClearFaults()
		s.InjectFault(Fault{Method: "AsymmetricSign", Code: codes.ResourceExhausted, RetryDelay: 1500 * time.Millisecond, Times: 1})
		err := sign(noRetry)
		wantCode(t, err, codes.ResourceExhausted, "Quota exceeded (injected fault).")
		ri, qf, n := details(err)
		if ri == nil || ri.GetRetryDelay().AsDuration() != 1500*time.Millisecond {
			t.Errorf("RetryInfo = %v, want a retry_delay of 1.5s", ri)
		}
		if qf == nil || len(qf.GetViolations()) != 1 || qf.GetViolations()[0].GetSubject() != "project:p" || qf.GetViolations()[0].GetDescription() == "" {
			t.Errorf("QuotaFailure = %v, want one violation with subject project:p and a description", qf)
		}
		if n != 2 {
			t.Errorf("%d details, want RetryInfo and QuotaFailure", n)
		}
	})
	t.Run("UNAVAILABLE with a delay", func(t *testing.T) {
		s.ClearFaults()
		s.InjectFault(Fault{Method: "AsymmetricSign", Code: codes.Unavailable, RetryDelay: time.Second, Times: 1})
		err := sign(noRetry)
		wantCode(t, err, codes.Unavailable, "")
		if ri, qf, n := details(err); ri == nil || ri.GetRetryDelay().AsDuration() != time.Second || qf != nil || n != 1 {
			t.Errorf("details: RetryInfo %v, QuotaFailure %v, %d in all; want RetryInfo of 1s only", ri, qf, n)
		}
	})
	t.Run("no delay", func(t *testing.T) {
		s.ClearFaults()
		s.InjectFault(Fault{Method: "AsymmetricSign", Code: codes.ResourceExhausted, Times: 1})
		err := sign(noRetry)
		wantCode(t, err, codes.ResourceExhausted, "")
		if _, _, n := details(err); n != 0 {
			t.Errorf("a fault without RetryDelay answered with %d details, want none", n)
		}
	})

	// A client honouring RetryInfo waits the advised delay: the request log
	// shows the second attempt arriving no earlier than that after the
	// first, which an injected fault answered.
	t.Run("request log of a retry", func(t *testing.T) {
		const delay = 200 * time.Millisecond
		s.ClearFaults()
		s.ResetCounts()
		s.InjectFault(Fault{Method: "AsymmetricSign", Code: codes.ResourceExhausted, RetryDelay: delay, Times: 1})
		var advised time.Duration
		honour := gax.WithRetry(func() gax.Retryer {
			return retryerFunc(func(err error) (time.Duration, bool) {
				ri, _, _ := details(err)
				if ri == nil {
					return 0, false
				}
				advised = ri.GetRetryDelay().AsDuration()
				return advised, true
			})
		})
		if err := sign(honour); err != nil {
			t.Fatalf("sign after the advised delay: %v", err)
		}
		if advised != delay {
			t.Errorf("advised %v, want %v", advised, delay)
		}
		var reqs []Request
		for _, r := range s.Requests() {
			if r.Method == "AsymmetricSign" {
				reqs = append(reqs, r)
			}
		}
		if len(reqs) != 2 {
			t.Fatalf("AsymmetricSign requests logged: %+v, want 2", reqs)
		}
		first, second := reqs[0], reqs[1]
		if !first.Injected || first.Code != codes.ResourceExhausted || first.Resource != v1 {
			t.Errorf("first attempt logged as %+v, want RESOURCE_EXHAUSTED by the injected fault on %s", first, v1)
		}
		if second.Injected || second.Code != codes.OK {
			t.Errorf("second attempt logged as %+v, want OK", second)
		}
		if gap := second.Received.Sub(first.Received); gap < delay {
			t.Errorf("the second attempt arrived %v after the first, before the advised %v", gap, delay)
		}
		if n := s.Counts()["AsymmetricSign"]; n != 2 {
			t.Errorf("Counts = %d, want 2", n)
		}
		s.ResetCounts()
		if r := s.Requests(); len(r) != 0 {
			t.Errorf("ResetCounts left %d logged requests", len(r))
		}
	})
}

// retryerFunc is a gax.Retryer from a function.
type retryerFunc func(error) (time.Duration, bool)

func (f retryerFunc) Retry(err error) (time.Duration, bool) { return f(err) }

// TestAdminRetryDelay sets a fault with retry_delay through the admin API,
// reads it back, refuses a delay without a code or not positive, and reads
// the request log.
func TestAdminRetryDelay(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	admin := httptest.NewServer(s.AdminHandler())
	defer admin.Close()
	ac := &AdminClient{BaseURL: admin.URL}

	post := func(body string) (int, string) {
		resp, err := http.Post(admin.URL+"/v1/faults", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"method":"AsymmetricSign","retry_delay":"1s"}`, "needs a code"},
		{`{"method":"AsymmetricSign","code":"RESOURCE_EXHAUSTED","retry_delay":"-1s"}`, "must be positive"},
		{`{"method":"AsymmetricSign","code":"RESOURCE_EXHAUSTED","retry_delay":"soon"}`, "retry_delay"},
	} {
		if code, body := post(bad.body); code != http.StatusBadRequest || !strings.Contains(body, bad.want) {
			t.Errorf("POST %s = %d %s, want 400 saying %q", bad.body, code, body, bad.want)
		}
	}
	if f := s.Faults(); len(f) != 0 {
		t.Fatalf("refused faults were added: %v", f)
	}

	if err := ac.InjectFault(ctx, Fault{Method: "GetCryptoKey", Code: codes.ResourceExhausted, RetryDelay: 2500 * time.Millisecond, Times: 1}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(admin.URL + "/v1/faults")
	if err != nil {
		t.Fatal(err)
	}
	var listed []map[string]any
	err = json.NewDecoder(resp.Body).Decode(&listed)
	resp.Body.Close()
	if err != nil || len(listed) != 1 || listed[0]["retry_delay"] != "2.5s" || listed[0]["code"] != "RESOURCE_EXHAUSTED" {
		t.Fatalf("GET /v1/faults = %v (%v), want the fault with retry_delay 2.5s", listed, err)
	}
	if f := s.Faults(); len(f) != 1 || f[0].RetryDelay != 2500*time.Millisecond {
		t.Fatalf("faults = %+v", f)
	}

	if err := ac.ResetCounts(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()}, noRetry)
	if ri, _, _ := details(err); status.Code(err) != codes.ResourceExhausted || ri.GetRetryDelay().AsDuration() != 2500*time.Millisecond {
		t.Fatalf("GetCryptoKey = %v, want RESOURCE_EXHAUSTED advising 2.5s", err)
	}
	if _, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()}); err != nil {
		t.Fatal(err)
	}
	reqs, err := ac.Requests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 2 || reqs[0].Method != "GetCryptoKey" || reqs[0].Code != codes.ResourceExhausted || !reqs[0].Injected ||
		reqs[1].Code != codes.OK || reqs[1].Injected || reqs[0].Resource != key.GetName() || reqs[1].Received.Before(reqs[0].Received) {
		t.Errorf("GET /v1/requests = %+v, want the throttled GetCryptoKey then the one that succeeded", reqs)
	}
}
