package azurekv

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestCloudTime checks that CloudTime is the vault's clock as its answers'
// Date headers carry it, not the host's: zero before any answer, the
// emulator's clock moved two days ahead after a call (within the header's
// second), whatever the call's outcome, and never moving back when the
// vault's clock does.
func TestCloudTime(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	b, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-a")
	var timer engine.CloudTimer = b
	if got := timer.CloudTime(); !got.IsZero() {
		t.Fatalf("CloudTime before any call = %v, want zero", got)
	}
	within := func(t *testing.T, got, want time.Time) {
		t.Helper()
		if d := want.Sub(got); d < 0 || d > 2*time.Second {
			t.Errorf("CloudTime = %v, want within two seconds before %v (off by %v)", got, want, d)
		}
	}
	ahead := time.Duration(0)
	for _, tt := range []struct {
		name    string
		advance time.Duration
		call    func() error
		wantErr bool
	}{
		{"a listing two days ahead", 48 * time.Hour, func() error {
			_, err := b.ListGenerations(callCtx(t))
			return err
		}, false},
		{"a refusal a day further", 24 * time.Hour, func() error {
			_, err := b.Refresh(callCtx(t), engine.Generation{KeyID: "x509-CA-A", Ref: keyName("x509-CA-A")})
			return err
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.Clock().Advance(tt.advance)
			ahead += tt.advance
			if err := tt.call(); (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want one: %v", err, tt.wantErr)
			}
			within(t, b.CloudTime(), srv.Clock().Now())
			if skew := b.CloudTime().Sub(time.Now()); skew < ahead-time.Minute {
				t.Errorf("CloudTime is %v ahead of the host's clock, want about %v: the host's time was taken", skew, ahead)
			}
		})
	}

	t.Run("the vault's clock moving back", func(t *testing.T) {
		before := b.CloudTime()
		srv.Clock().Advance(-time.Hour)
		if _, err := b.ListGenerations(callCtx(t)); err != nil {
			t.Fatal(err)
		}
		if got := b.CloudTime(); got.Before(before) {
			t.Errorf("CloudTime moved back from %v to %v", before, got)
		}
	})
}

// TestCloudClockKeepsLatest observes times from many goroutines at once, as
// concurrent calls' answers arrive: the latest is kept.
func TestCloudClockKeepsLatest(t *testing.T) {
	var c cloudClock
	base := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			c.observe(base.Add(time.Duration(i*7%64) * time.Second))
			_ = c.now()
		})
	}
	wg.Wait()
	if got, want := c.now(), base.Add(63*time.Second); !got.Equal(want) {
		t.Errorf("now = %v, want the latest %v", got, want)
	}
	c.observe(base)
	if got, want := c.now(), base.Add(63*time.Second); !got.Equal(want) {
		t.Errorf("an earlier time moved the clock back to %v, want %v", got, want)
	}
	var none *cloudClock
	if !none.now().IsZero() {
		t.Errorf("a nil clock has a time")
	}
}

// TestCloudClockPolicy runs the policy in an azcore pipeline over answers
// with Date headers of every kind: the HTTP date forms are read, and a
// missing or unreadable header leaves the time as it was.
func TestCloudClockPolicy(t *testing.T) {
	at := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		name string
		date string
		want time.Time
	}{
		{"RFC 1123", "Thu, 02 Jan 2031 03:04:05 GMT", at},
		{"RFC 850", "Thursday, 02-Jan-31 03:04:05 GMT", at},
		{"asctime", "Thu Jan  2 03:04:05 2031", at},
		{"missing", "", time.Time{}},
		{"unreadable", "tomorrow", time.Time{}},
		{"RFC 3339, not an HTTP date", "2031-01-02T03:04:05Z", time.Time{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c cloudClock
			pl := runtime.NewPipeline("test", "v0", runtime.PipelineOptions{PerRetry: []policy.Policy{&c}}, &policy.ClientOptions{
				Transport: answer(func(*http.Request) *http.Response {
					h := http.Header{}
					if tt.date != "" {
						h.Set("Date", tt.date)
					}
					return &http.Response{StatusCode: http.StatusOK, Header: h, Body: http.NoBody}
				}),
				Retry: policy.RetryOptions{MaxRetries: -1},
			})
			req, err := runtime.NewRequest(t.Context(), http.MethodGet, "https://vault.example/keys")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pl.Do(req); err != nil {
				t.Fatal(err)
			}
			if got := c.now(); !got.Equal(tt.want) {
				t.Errorf("time %v, want %v", got, tt.want)
			}
		})
	}
}

// answer is a policy.Transporter answering every request with f.
type answer func(*http.Request) *http.Response

func (f answer) Do(req *http.Request) (*http.Response, error) {
	resp := f(req)
	resp.Request = req
	return resp, nil
}
