package cloudkms

import (
	"context"
	"crypto"
	"errors"
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
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// noRetry turns off the client's default retry of UNAVAILABLE and
// DEADLINE_EXCEEDED for one call.
var noRetry = gax.WithRetry(func() gax.Retryer { return nil })

// TestFaultDeadlineExceeded injects the DEADLINE_EXCEEDED code (not
// latency): the server answers at once with that status, which reaches the
// caller as codes.DeadlineExceeded unless the client's retry policy (which
// retries it for most methods) succeeds on a later attempt.
func TestFaultDeadlineExceeded(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	v1 := key.GetName() + "/cryptoKeyVersions/1"
	admin := httptest.NewServer(s.AdminHandler())
	defer admin.Close()
	sign := func(opts ...gax.CallOption) error {
		_, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: v1, Digest: digestFor(crypto.SHA256, []byte("x"))}, opts...)
		return err
	}

	for _, tc := range []struct {
		desc   string
		inject func(t *testing.T)
		method string
		call   func() error
		ok     bool   // the call succeeds in the end (client retries)
		msg    string // the status message the caller sees
		calls  int    // requests the server received
	}{
		{
			desc: "method the client does not retry",
			inject: func(*testing.T) {
				s.InjectFault(Fault{Method: "CreateCryptoKeyVersion", Code: codes.DeadlineExceeded, Times: 1})
			},
			method: "CreateCryptoKeyVersion",
			call: func() error {
				_, err := c.CreateCryptoKeyVersion(ctx, &kmspb.CreateCryptoKeyVersionRequest{Parent: key.GetName(), CryptoKeyVersion: &kmspb.CryptoKeyVersion{}})
				return err
			},
			msg: "Deadline exceeded (injected fault).", calls: 1,
		},
		{
			desc: "retries turned off",
			inject: func(*testing.T) {
				s.InjectFault(Fault{Method: "AsymmetricSign", Code: codes.DeadlineExceeded, Times: 1})
			},
			method: "AsymmetricSign",
			call:   func() error { return sign(noRetry) },
			msg:    "Deadline exceeded (injected fault).", calls: 1,
		},
		{
			desc: "retried by the client's default policy",
			inject: func(*testing.T) {
				s.InjectFault(Fault{Method: "AsymmetricSign", Code: codes.DeadlineExceeded, Times: 2})
			},
			method: "AsymmetricSign",
			call:   func() error { return sign() },
			ok:     true, calls: 3,
		},
		{
			desc: "injected through the admin API by code name",
			inject: func(t *testing.T) {
				resp, err := http.Post(admin.URL+"/v1/faults", "application/json",
					strings.NewReader(`{"method":"GetPublicKey","code":"DEADLINE_EXCEEDED","message":"backend timed out","times":1}`))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("POST /v1/faults: %s", resp.Status)
				}
			},
			method: "GetPublicKey",
			call: func() error {
				_, err := c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: v1}, noRetry)
				return err
			},
			msg: "backend timed out", calls: 1,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s.ClearFaults()
			s.ResetCounts()
			tc.inject(t)
			start := time.Now()
			err := tc.call()
			if tc.ok {
				if err != nil {
					t.Fatalf("after %d faults: %v", tc.calls-1, err)
				}
			} else {
				st, isStatus := status.FromError(err)
				if !isStatus || st.Code() != codes.DeadlineExceeded || st.Message() != tc.msg {
					t.Fatalf("err = %v, want the server's DEADLINE_EXCEEDED %q", err, tc.msg)
				}
				if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
					t.Fatalf("looks like a local timeout, not the injected status: %v after %v", err, time.Since(start))
				}
			}
			if n := s.Counts()[tc.method]; n != tc.calls {
				t.Errorf("%s reached the server %d times, want %d", tc.method, n, tc.calls)
			}
			if f := s.Faults(); len(f) != 0 {
				t.Errorf("faults left: %v", f)
			}
		})
	}
	// The failed CreateCryptoKeyVersion created nothing.
	k, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: key.GetName() + "/cryptoKeyVersions/2"}); status.Code(err) != codes.NotFound {
		t.Errorf("version 2 after a faulted create: %v (key %v)", err, k.GetName())
	}
}

// TestCryptoQuota exhausts the cryptographic-requests quota: AsymmetricSign
// and GetPublicKey share it, reads and writes have their own, the error is
// RESOURCE_EXHAUSTED with the ErrorInfo and Help details the service sends,
// and the next minute of the emulator clock refills it.
func TestCryptoQuota(t *testing.T) {
	s, c := startTest(t, Options{}) // manual clock at 03:04:05
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	v1 := key.GetName() + "/cryptoKeyVersions/1"
	const limit = 3
	s.SetQuotaLimits(QuotaLimits{CryptoPerMinute: limit})
	s.SetQuotas(true)

	sign := func() error {
		_, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: v1, Digest: digestFor(crypto.SHA256, []byte("x"))})
		return err
	}
	calls := []struct {
		method string
		crypto bool
		call   func() error
	}{
		{"AsymmetricSign", true, sign},
		{"GetPublicKey", true, func() error {
			_, err := c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: v1})
			return err
		}},
		{"GetCryptoKey", false, func() error {
			_, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()})
			return err
		}},
		{"ListCryptoKeyVersions", false, func() error {
			_, err := c.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: key.GetName()}).Next()
			return err
		}},
		{"UpdateCryptoKey", false, func() error {
			_, err := c.UpdateCryptoKey(ctx, &kmspb.UpdateCryptoKeyRequest{
				CryptoKey:  &kmspb.CryptoKey{Name: key.GetName(), Labels: map[string]string{"a": "b"}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}},
			})
			return err
		}},
	}

	// spend uses up the window's budget: limit-1 signs and one GetPublicKey.
	spend := func(t *testing.T) {
		t.Helper()
		for i := range limit - 1 {
			if err := sign(); err != nil {
				t.Fatalf("sign %d of %d: %v", i+1, limit, err)
			}
		}
		if err := calls[1].call(); err != nil {
			t.Fatalf("GetPublicKey within the quota: %v", err)
		}
	}
	spend(t)
	for _, tc := range calls {
		t.Run("exhausted/"+tc.method, func(t *testing.T) {
			before := s.Counts()[tc.method]
			err := tc.call()
			if !tc.crypto {
				if err != nil {
					t.Fatalf("%s counts against another quota but failed: %v", tc.method, err)
				}
				return
			}
			st := status.Convert(err)
			want := "Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute' of service 'cloudkms.googleapis.com' for consumer 'project:p'."
			if st.Code() != codes.ResourceExhausted || st.Message() != want {
				t.Fatalf("err = %v, want RESOURCE_EXHAUSTED %q", err, want)
			}
			if n := s.Counts()[tc.method] - before; n != 1 {
				t.Errorf("the client sent %s %d times; RESOURCE_EXHAUSTED is not retried", tc.method, n)
			}
			var info *errdetails.ErrorInfo
			var help *errdetails.Help
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *errdetails.ErrorInfo:
					info = d
				case *errdetails.Help:
					help = d
				}
			}
			if info == nil || info.GetReason() != "RATE_LIMIT_EXCEEDED" || info.GetDomain() != "googleapis.com" {
				t.Fatalf("ErrorInfo = %v", info)
			}
			for k, v := range map[string]string{
				"service": "cloudkms.googleapis.com", "consumer": "projects/p",
				"quota_metric": "cloudkms.googleapis.com/crypto_requests", "quota_limit": "CryptoRequestsPerMinutePerProject",
				"quota_limit_value": "3", "quota_location": "global",
			} {
				if got := info.GetMetadata()[k]; got != v {
					t.Errorf("ErrorInfo.metadata[%s] = %q, want %q", k, got, v)
				}
			}
			if help == nil || len(help.GetLinks()) == 0 || !strings.HasPrefix(help.GetLinks()[0].GetUrl(), "https://cloud.google.com/docs/quotas/") {
				t.Errorf("Help = %v", help)
			}
		})
	}

	// Fixed one-minute windows on the emulator clock: still exhausted at
	// 03:04:59, refilled (to exactly the limit) at 03:05:00.
	s.Clock().Advance(54 * time.Second)
	if err := sign(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("same minute: %v, want RESOURCE_EXHAUSTED", err)
	}
	s.Clock().Advance(time.Second)
	spend(t)
	if err := sign(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("after the refilled budget: %v, want RESOURCE_EXHAUSTED", err)
	}
	s.SetQuotas(false)
	if err := sign(); err != nil {
		t.Fatalf("quotas off: %v", err)
	}
}
