package azurekv

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

const (
	fakeVaultURL = "https://contoso.vault.azure.net/"
	fakeHSMURL   = "https://contoso.managedhsm.azure.net/"
	fakeOtherURL = "https://keys.contoso.example/"
	fakeKeyRef   = "spire-key-1b4e28ba-2fa1-41d2-883f-0016d3cca427-x509-CA-A"
)

// runOp runs the backend operation that makes vault call op and returns its
// error.
func runOp(ctx context.Context, b *Backend, op string) error {
	g := engine.Generation{KeyID: "x509-CA-A", Ref: fakeKeyRef, Version: "v1", Type: engine.ECP256}
	var err error
	switch op {
	case "ListKeys":
		_, err = b.ListGenerations(ctx)
	case "CreateKey":
		_, err = b.Create(ctx, createReq("x509-CA-A", engine.ECP256))
	case "GetKey":
		_, err = b.Fetch(ctx, g)
	case "UpdateKey":
		_, err = b.KeepAlive(ctx, g)
	case "Sign":
		digest := sha256.Sum256([]byte("x"))
		_, err = b.Sign(ctx, g, digest[:], crypto.SHA256)
	case "DeleteKey", "PurgeDeletedKey":
		err = b.Retire(ctx, g)
	default:
		panic("no backend operation makes " + op)
	}
	return err
}

// TestErrorMapping checks, without any vault, how each answer of the vault
// (and each failure to get one) becomes a gRPC code and a message that names
// the vault, the operation, the key and the fix.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	deadline := func(status, tries, throttled int) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			c := ctx.Value(callKey{}).(*call)
			c.lastStatus, c.tries, c.throttled = status, tries, throttled
			return fmt.Errorf("send: %w", context.DeadlineExceeded)
		}
	}
	answer := func(err error) func(context.Context) error { return func(context.Context) error { return err } }
	tests := []struct {
		name  string
		vault string
		hsm   bool
		purge bool
		op    string
		err   func(ctx context.Context) error
		code  codes.Code
		want  []string
	}{
		{name: "HSM key refused by a Standard vault", vault: fakeVaultURL, hsm: true, op: "CreateKey",
			err:  answer(vaultAnswer(400, "BadParameter", "", "Key type EC-HSM is not supported on a standard vault.")),
			code: codes.FailedPrecondition, want: []string{"Premium vault", `key_protection = "software"`, "CreateKey on key spire-key-"}},
		{name: "HSM key refused otherwise worded", vault: fakeVaultURL, hsm: true, op: "CreateKey",
			err:  answer(vaultAnswer(400, "BadParameter", "", "Key type RSA-HSM is not supported here.")),
			code: codes.InvalidArgument, want: []string{"not supported here", "if this is a Standard vault", `key_protection = "software"`}},
		{name: "bad request", vault: fakeVaultURL, op: "Sign",
			err:  answer(vaultAnswer(400, "BadParameter", "", "Bad digest.")),
			code: codes.InvalidArgument, want: []string{"400 BadParameter: Bad digest.", "Sign on key " + fakeKeyRef}},
		{name: "token not accepted", vault: fakeVaultURL, op: "ListKeys",
			err:  answer(vaultAnswer(401, "Unauthorized", "", "AKV10032: Invalid issuer.")),
			code: codes.Unauthenticated, want: []string{"did not accept the token", "vault's tenant", "ListKeys", fakeVaultURL}},
		{name: "disabled key", vault: fakeVaultURL, op: "Sign",
			err:  answer(vaultAnswer(403, "Forbidden", "KeyDisabled", "Operation sign is not allowed on a disabled key.")),
			code: codes.FailedPrecondition, want: []string{"disabled", "enable it, or delete it"}},
		{name: "purge protection", vault: fakeVaultURL, purge: true, op: "PurgeDeletedKey",
			err: func(ctx context.Context) error {
				if ctx.Value(callKey{}).(*call).op == "DeleteKey" {
					return nil
				}
				return vaultAnswer(403, "Forbidden", "", "Operation 'DeletedKeyPurge' is not allowed because purge protection is enabled for this vault.")
			},
			code: codes.FailedPrecondition, want: []string{"purge protection", "purge_deleted_keys = false"}},
		{name: "create forbidden on a vault", vault: fakeVaultURL, op: "CreateKey",
			err:  answer(vaultAnswer(403, "Forbidden", "ForbiddenByRbac", "Caller is not authorized.")),
			code: codes.PermissionDenied, want: []string{"may not create", `"Key Vault Crypto Officer" role`, `"create" key permission`, "11111111-2222"}},
		{name: "sign forbidden on a vault", vault: fakeVaultURL, op: "Sign",
			err:  answer(vaultAnswer(403, "Forbidden", "ForbiddenByRbac", "Caller is not authorized.")),
			code: codes.PermissionDenied, want: []string{"may not sign", "Key Vault Crypto User (or Crypto Officer)"}},
		{name: "delete forbidden on a vault", vault: fakeVaultURL, op: "DeleteKey",
			err:  answer(vaultAnswer(403, "Forbidden", "ForbiddenByRbac", "Caller is not authorized.")),
			code: codes.PermissionDenied, want: []string{"DeleteKey on key " + fakeKeyRef, `"delete" key permission`}},
		{name: "purge forbidden on a Managed HSM", vault: fakeHSMURL, purge: true, op: "PurgeDeletedKey",
			err: func(ctx context.Context) error {
				if ctx.Value(callKey{}).(*call).op == "DeleteKey" {
					return nil
				}
				return vaultAnswer(403, "Forbidden", "", "Caller is not authorized.")
			},
			code: codes.PermissionDenied, want: []string{`"Managed HSM Crypto Officer" local role`}},
		{name: "forbidden on an unknown host names both", vault: fakeOtherURL, op: "UpdateKey",
			err:  answer(vaultAnswer(403, "Forbidden", "", "Caller is not authorized.")),
			code: codes.PermissionDenied, want: []string{"Key Vault Crypto Officer", "on a Managed HSM", "Managed HSM Crypto User"}},
		{name: "key not found", vault: fakeVaultURL, op: "GetKey",
			err:  answer(vaultAnswer(404, "KeyNotFound", "", "A key with (name/id) x was not found in this key vault.")),
			code: codes.NotFound, want: []string{"404 KeyNotFound", "GetKey on key"}},
		{name: "conflict", vault: fakeVaultURL, op: "CreateKey",
			err:  answer(vaultAnswer(409, "Conflict", "ObjectIsDeletedButRecoverable", "Key is deleted but recoverable.")),
			code: codes.FailedPrecondition, want: []string{"409 ObjectIsDeletedButRecoverable"}},
		{name: "throttled", vault: fakeVaultURL, op: "Sign",
			err:  answer(vaultAnswer(429, "Throttled", "VaultRequestTypeLimitReached", "Request was not processed because too many requests were received.")),
			code: codes.ResourceExhausted, want: []string{"throttled by the vault", "spread the load", "VaultRequestTypeLimitReached"}},
		{name: "unavailable", vault: fakeVaultURL, op: "UpdateKey",
			err:  answer(vaultAnswer(503, "ServiceUnavailable", "", "Try again.")),
			code: codes.Unavailable, want: []string{"UpdateKey on key", "503"}},
		{name: "unexpected status", vault: fakeVaultURL, op: "GetKey",
			err:  answer(vaultAnswer(418, "Teapot", "", "")),
			code: codes.Unknown, want: []string{"418 Teapot"}},
		{name: "Retry-After past the budget", vault: fakeVaultURL, op: "Sign",
			err:  answer(&budgetError{status: 429, retryAfter: time.Minute, left: 3 * time.Second}),
			code: codes.ResourceExhausted, want: []string{"past the call's budget", "retry after 1m0s", "Sign on key " + fakeKeyRef}},
		{name: "Retry-After of a 503 past the budget", vault: fakeVaultURL, op: "Sign",
			err:  answer(&budgetError{status: 503, retryAfter: time.Minute, left: 3 * time.Second}),
			code: codes.Unavailable, want: []string{"answered 503 and asked to retry after 1m0s"}},
		{name: "still throttled at the deadline", vault: fakeVaultURL, op: "Sign",
			err:  deadline(429, 4, 4),
			code: codes.ResourceExhausted, want: []string{"still throttled", "4 throttled answers in 4 tries"}},
		{name: "5xx until the deadline", vault: fakeVaultURL, op: "UpdateKey",
			err:  deadline(503, 3, 0),
			code: codes.Unavailable, want: []string{"kept answering 503", "UpdateKey on key"}},
		{name: "no answer within the budget", vault: fakeVaultURL, op: "ListKeys",
			err:  deadline(0, 0, 0),
			code: codes.Unavailable, want: []string{"no answer within the call's budget"}},
		{name: "canceled", vault: fakeVaultURL, op: "Sign",
			err:  answer(fmt.Errorf("send: %w", context.Canceled)),
			code: codes.Canceled, want: []string{"canceled"}},
		{name: "credential unavailable", vault: fakeVaultURL, op: "ListKeys",
			err:  answer(errors.New("DefaultAzureCredential: failed to acquire a token")),
			code: codes.Unauthenticated, want: []string{"no token as app 11111111"}},
		{name: "connection refused", vault: fakeVaultURL, op: "CreateKey",
			err:  answer(errors.New("dial tcp 10.0.0.1:443: connect: connection refused")),
			code: codes.Unavailable, want: []string{"connection refused", "CreateKey on key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeVault{answer: func(ctx context.Context, _, _ string) error { return tt.err(ctx) }}
			b := fakeBackend(t, f, tt.vault, func(o *Options) { o.HSM, o.PurgeDeletedKeys = tt.hsm, tt.purge })
			wantCode(t, runOp(t.Context(), b, tt.op), tt.code, append(tt.want, tt.vault)...)
		})
	}
}

// scripted is a transport answering each try with the next status and
// headers of a script.
type scripted struct {
	answers []*http.Response
	tries   int
}

func (s *scripted) Do(req *http.Request) (*http.Response, error) {
	r := s.answers[min(s.tries, len(s.answers)-1)]
	s.tries++
	out := *r
	out.Request = req
	out.Body = http.NoBody
	return &out, nil
}

func answerOf(code int, header ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	return &http.Response{StatusCode: code, Header: h}
}

// TestRetryDecisions checks, without any vault, the per-try policy's
// decisions in azcore's pipeline with the backend's retry options: which
// answers are retried, that a Retry-After past the deadline ends the call at
// once, and what is recorded for the error message and the metrics. The
// retry delay is shortened; the rules are the backend's.
func TestRetryDecisions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		answers   []*http.Response
		budget    time.Duration
		wantTries int
		wantErr   bool // a budgetError
		throttled float32
		server    float32
	}{
		{name: "429 then success", answers: []*http.Response{answerOf(429, "Retry-After", "0"), answerOf(200)}, budget: time.Minute, wantTries: 2, throttled: 1},
		{name: "429 without Retry-After then success", answers: []*http.Response{answerOf(429), answerOf(429), answerOf(200)}, budget: time.Minute, wantTries: 3, throttled: 2},
		{name: "503 then success", answers: []*http.Response{answerOf(503), answerOf(200)}, budget: time.Minute, wantTries: 2, server: 1},
		{name: "Retry-After past the deadline", answers: []*http.Response{answerOf(429, "Retry-After", "60")}, budget: 5 * time.Second, wantTries: 1, wantErr: true, throttled: 1},
		{name: "retry-after-ms past the deadline", answers: []*http.Response{answerOf(503, "retry-after-ms", "90000")}, budget: 5 * time.Second, wantTries: 1, wantErr: true, server: 1},
		{name: "400 not retried", answers: []*http.Response{answerOf(400)}, budget: time.Minute, wantTries: 1},
		{name: "404 not retried", answers: []*http.Response{answerOf(404)}, budget: time.Minute, wantTries: 1},
		{name: "409 not retried", answers: []*http.Response{answerOf(409)}, budget: time.Minute, wantTries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := &recordedMetrics{}
			tr := &scripted{answers: tt.answers}
			ro := retryOptions()
			ro.RetryDelay, ro.MaxRetryDelay = time.Millisecond, time.Millisecond
			pl := runtime.NewPipeline("test", "v0", runtime.PipelineOptions{PerRetry: []policy.Policy{&tryPolicy{metrics: m}}},
				&policy.ClientOptions{Transport: tr, Retry: ro})
			ctx, cancel := context.WithTimeout(t.Context(), tt.budget)
			defer cancel()
			c := &call{op: "Sign"}
			req, err := runtime.NewRequest(withCall(ctx, c), http.MethodPost, "https://contoso.vault.azure.net/keys/k/sign")
			if err != nil {
				t.Fatal(err)
			}
			_, err = pl.Do(req)
			var be *budgetError
			if errors.As(err, &be) != tt.wantErr {
				t.Errorf("error %v; want a budget error: %v", err, tt.wantErr)
			}
			if tr.tries != tt.wantTries || c.tries != tt.wantTries {
				t.Errorf("%d tries (recorded %d), want %d", tr.tries, c.tries, tt.wantTries)
			}
			if got := m.get("kmskeeper.azure.throttled"); got != tt.throttled || int(got) != c.throttled {
				t.Errorf("throttled counter %v (recorded %d), want %v", got, c.throttled, tt.throttled)
			}
			if got := m.get("kmskeeper.azure.server_errors"); got != tt.server {
				t.Errorf("server_errors counter %v, want %v", got, tt.server)
			}
		})
	}
}

// TestRetryAfter checks the delay hints read, in azcore's order.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		header []string
		want   time.Duration
	}{
		{nil, 0},
		{[]string{"Retry-After", "3"}, 3 * time.Second},
		{[]string{"Retry-After", "soon"}, 0},
		{[]string{"retry-after-ms", "1500"}, 1500 * time.Millisecond},
		{[]string{"x-ms-retry-after-ms", "250", "Retry-After", "9"}, 250 * time.Millisecond},
	} {
		if got := retryAfter(answerOf(429, tt.header...).Header); got != tt.want {
			t.Errorf("retryAfter(%v) = %v, want %v", tt.header, got, tt.want)
		}
	}
	if strings.Contains(fmt.Sprint(retryOptions().StatusCodes), "404") {
		t.Errorf("404 is retried: %v", retryOptions().StatusCodes)
	}
}
