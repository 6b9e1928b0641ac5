package keyvault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func TestFaultsHonouredBySDKRetry(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := newClient(t, s, "")
	cx := ctx(t)
	if _, err := c.CreateKey(cx, "k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		fault    Fault
		minDelay time.Duration
	}{
		{"429 with Retry-After", Fault{Op: "GetKey", Status: 429, RetryAfter: Duration(time.Second), Count: 1}, time.Second},
		{"429 without Retry-After", Fault{Op: "GetKey", Status: 429, Count: 1}, 0},
		{"503 twice", Fault{Op: "GetKey", Status: 503, Count: 2}, 0},
		{"500", Fault{Status: 500, Count: 1}, 0},
		{"dropped connection", Fault{Op: "GetKey", Drop: true, Count: 1}, 0},
		{"latency", Fault{Op: "GetKey", Latency: Duration(200 * time.Millisecond), Count: 1}, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.ResetCounts()
			s.InjectFault(tt.fault)
			start := time.Now()
			if _, err := c.GetKey(cx, "k", "", nil); err != nil {
				t.Fatalf("GetKey through fault: %v", err)
			}
			if d := time.Since(start); d < tt.minDelay {
				t.Errorf("took %v, want at least %v", d, tt.minDelay)
			}
			want := 1 + max(tt.fault.Count, 0)
			if tt.fault.Latency > 0 {
				want = 1
			}
			if got := s.Counts()["GetKey"]; got != want {
				t.Errorf("GetKey count %d, want %d", got, want)
			}
			if f := s.Faults(); len(f) != 0 {
				t.Errorf("fault not consumed: %+v", f)
			}
		})
	}

	t.Run("status until cleared", func(t *testing.T) {
		s.InjectFault(Fault{Op: "Sign", Status: 429, Code: "Throttled"})
		nc := newClientWith(t, s, "", secretCredential(t, s, s.ClientID(), s.ClientSecret()), func(o *azkeys.ClientOptions) {
			o.Retry = policy.RetryOptions{MaxRetries: -1}
		})
		_, err := nc.Sign(cx, "k", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
		wantRespErr(t, err, http.StatusTooManyRequests, CodeThrottled)
		s.ClearFaults()
		if _, err := nc.Sign(cx, "k", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("slow create meets the caller's deadline", func(t *testing.T) {
		s.InjectFault(Fault{Op: "CreateKey", Latency: Duration(5 * time.Second)})
		defer s.ClearFaults()
		short, cancel := context.WithTimeout(cx, 300*time.Millisecond)
		defer cancel()
		_, err := c.CreateKey(short, "slow", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
	})
}

func TestThrottlingPublishedLimits(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{ManagedHSMs: []string{"hsm-one"}, Vaults: []VaultSpec{{Name: "vault-one"}}, ThrottleRetryAfter: true})
	s.Clock().Freeze() // the 10 s window holds however slow the machine
	s.SetThrottling(true)
	noRetry := func(o *azkeys.ClientOptions) { o.Retry = policy.RetryOptions{MaxRetries: -1} }
	cred := secretCredential(t, s, s.ClientID(), s.ClientSecret())
	c := newClientWith(t, s, "vault-one", cred, noRetry)
	cx := ctx(t)
	// Software key creation: 20 per 10 s.
	for i := range 20 {
		if _, err := c.CreateKey(cx, fmt.Sprintf("k%d", i), azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	_, err := c.CreateKey(cx, "k20", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	re := wantRespErr(t, err, http.StatusTooManyRequests, CodeThrottled)
	ra, convErr := strconv.Atoi(re.RawResponse.Header.Get("Retry-After"))
	if convErr != nil || ra < 1 || ra > 10 {
		t.Errorf("Retry-After = %q", re.RawResponse.Header.Get("Retry-After"))
	}
	// Managed HSMs are not throttled.
	h := newClientWith(t, s, "hsm-one", cred, noRetry)
	for i := range 25 {
		if _, err := h.CreateKey(cx, fmt.Sprintf("h%d", i), azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatalf("HSM create %d: %v", i, err)
		}
	}
	// The window moves with the emulator clock.
	s.Clock().Advance(11 * time.Second)
	if _, err := c.CreateKey(cx, "k20", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatalf("create after the window: %v", err)
	}
	s.SetThrottling(false)
	for i := range 25 {
		if _, err := c.CreateKey(cx, fmt.Sprintf("x%d", i), azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatalf("create with throttling off: %v", err)
		}
	}
}

func TestThrottleWeights(t *testing.T) {
	t.Parallel()
	now := time.Now()
	var th throttle
	// 248 HSM RSA-4096 GETs plus 16 HSM RSA-2048 GETs reach the limit.
	for i := range 248 {
		if ok, _ := th.admit(now, keyClass{hsm: true, rsa: true, bits: 4096}); !ok {
			t.Fatalf("RSA-4096 get %d throttled", i)
		}
	}
	for i := range 16 {
		if ok, _ := th.admit(now, keyClass{hsm: true, rsa: true, bits: 2048}); !ok {
			t.Fatalf("RSA-2048 get %d throttled", i)
		}
	}
	ok, wait := th.admit(now, keyClass{hsm: true, rsa: true, bits: 2048})
	if ok || wait != throttleWindow {
		t.Errorf("admit past the limit = %v, %v", ok, wait)
	}
	if ok, _ := th.admit(now.Add(throttleWindow+time.Millisecond), keyClass{}); !ok {
		t.Error("window did not slide")
	}
}

// TestThrottledAsTheService checks the throttler's default answer, as the
// service gives it: 429 Throttled with inner code
// VaultRequestTypeLimitReached and no Retry-After header.
func TestThrottledAsTheService(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	s.Clock().Freeze() // the 10 s window holds however slow the machine
	s.SetThrottling(true)
	noRetry := func(o *azkeys.ClientOptions) { o.Retry = policy.RetryOptions{MaxRetries: -1} }
	c := newClientWith(t, s, "", secretCredential(t, s, s.ClientID(), s.ClientSecret()), noRetry)
	cx := ctx(t)
	var err error
	for i := 0; err == nil && i < 30; i++ {
		_, err = c.CreateKey(cx, fmt.Sprintf("k%d", i), azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	}
	re := wantRespErr(t, err, http.StatusTooManyRequests, CodeThrottled)
	if h := re.RawResponse.Header.Get("Retry-After"); h != "" {
		t.Errorf("Retry-After = %q, want none", h)
	}
	if !strings.Contains(re.Error(), CodeVaultRequestTypeLimitReached) {
		t.Errorf("429 body lacks the inner code %s: %v", CodeVaultRequestTypeLimitReached, re)
	}
}
