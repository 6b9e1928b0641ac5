package azurekv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// serviceError is the body of a Key Vault error answer.
type serviceError struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError *struct {
			Code string `json:"code"`
		} `json:"innererror"`
	} `json:"error"`
}

// describe returns the inner (or outer) error code and the first line of the
// service's message, for error messages that stay one line long.
func describe(re *azcore.ResponseError) (code, msg string) {
	code = re.ErrorCode
	if re.RawResponse == nil {
		return code, ""
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil || len(body) == 0 {
		return code, ""
	}
	var se serviceError
	if json.Unmarshal(body, &se) != nil {
		return code, ""
	}
	if se.Error.InnerError != nil && se.Error.InnerError.Code != "" {
		code = se.Error.InnerError.Code
	} else if se.Error.Code != "" {
		code = se.Error.Code
	}
	msg, _, _ = strings.Cut(strings.TrimSpace(se.Error.Message), "\n")
	msg = strings.TrimSpace(msg)
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return code, msg
}

// role names what grants perm: the RBAC role on a vault or a Managed HSM's
// local role, and the access-policy permission for vaults using policies.
func (b *Backend) role(perm string) string {
	vaultRole := "Key Vault Crypto Officer"
	if perm == "sign" {
		vaultRole = "Key Vault Crypto User (or Crypto Officer)"
	}
	hsmRole := "Managed HSM Crypto User"
	if perm == "purge" {
		hsmRole = "Managed HSM Crypto Officer"
	}
	vault := fmt.Sprintf("the %q role on the vault (Azure RBAC), or the %q key permission in its access policy", vaultRole, perm)
	hsm := fmt.Sprintf("the %q local role on the Managed HSM", hsmRole)
	switch b.vault.kind {
	case kindVault:
		return vault
	case kindManagedHSM:
		return hsm
	}
	return vault + "; on a Managed HSM, " + hsm
}

// what names the operation and key for messages.
func (c *call) what() string {
	if c.key == "" {
		return c.op
	}
	return c.op + " on key " + c.key
}

// fail maps an error from the SDK to a coded error that names the vault, the
// operation and the key, and says what to do. It never includes a secret:
// azidentity errors name the credential type and Entra's answer, not the
// secret, and ResponseError bodies are reduced to their code and message.
func (b *Backend) fail(ctx context.Context, c *call, err error) error {
	where := fmt.Sprintf("%s: %s", b.vault.url, c.what())
	var be *budgetError
	if errors.As(err, &be) {
		if be.status == http.StatusTooManyRequests {
			return engine.Errorf(codes.ResourceExhausted, "%s: throttled by the vault past the call's budget; the vault's request limit is shared by everything using it: retry later, or spread the load over more vaults (%v; %d throttled answers)", where, be, c.throttled)
		}
		return engine.Errorf(codes.Unavailable, "%s: %v", where, be)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return b.failResponse(c, where, re)
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) {
		return engine.Errorf(codes.Unauthenticated, "%s: obtaining a token as %s failed: %v", where, b.identity, afe)
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		switch {
		case errors.Is(ctx.Err(), context.Canceled) || errors.Is(err, context.Canceled):
			return engine.Errorf(codes.Canceled, "%s: canceled: %w", where, err)
		case c.lastStatus == http.StatusTooManyRequests:
			return engine.Errorf(codes.ResourceExhausted, "%s: still throttled by the vault when the call's budget ran out; the vault's request limit is shared by everything using it: retry later, or spread the load over more vaults (%d throttled answers in %d tries)", where, c.throttled, c.tries)
		case c.lastStatus >= 500:
			return engine.Errorf(codes.Unavailable, "%s: the vault kept answering %d until the call's budget ran out (%d tries)", where, c.lastStatus, c.tries)
		case c.lastErr != nil:
			return b.unreachable(where, c)
		case c.tries == 0:
			return engine.Errorf(codes.Unavailable, "%s: no answer within the call's budget: the first request to %s did not complete (a slow DNS lookup, TLS handshake or token request); check that this server reaches %s on port 443: %w", where, b.vault.host, b.vault.host, err)
		}
		return engine.Errorf(codes.Unavailable, "%s: no answer within the call's budget (%d tries): %w", where, c.tries, err)
	}
	if strings.Contains(err.Error(), "Credential") || strings.Contains(err.Error(), "credential") {
		// azidentity's "credential unavailable" errors (no managed identity
		// endpoint, no environment variables) are unexported types.
		return engine.Errorf(codes.Unauthenticated, "%s: no token as %s: %v", where, b.identity, err)
	}
	if c.lastErr != nil && c.lastStatus == 0 {
		return b.unreachable(where, c)
	}
	return engine.Errorf(codes.Unavailable, "%s: %v", where, err)
}

// unreachable is the error of a call whose tries all failed without an
// answer: the vault could not be reached from this server.
func (b *Backend) unreachable(where string, c *call) error {
	tries := "1 try"
	if c.tries != 1 {
		tries = fmt.Sprintf("%d tries", c.tries)
	}
	return engine.Errorf(codes.Unavailable, "%s: the vault could not be reached (%s, the last failed with: %v); check that %s resolves from this server and that DNS, proxies and firewalls let HTTPS through to it on port 443 (with a private endpoint, that the private DNS zone is linked to this server's network)", where, tries, c.lastErr, b.vault.host)
}

// failResponse maps an HTTP answer of the vault.
func (b *Backend) failResponse(c *call, where string, re *azcore.ResponseError) error {
	code, msg := describe(re)
	said := fmt.Sprintf("the vault answered %d %s", re.StatusCode, code)
	if msg != "" {
		said += ": " + msg
	}
	switch s := re.StatusCode; {
	case s == http.StatusBadRequest && c.perm == "create" && b.hsm && strings.Contains(strings.ToLower(msg), "standard vault"):
		return engine.Errorf(codes.FailedPrecondition, "%s: key_protection = \"hsm\" needs a Premium vault or a Managed HSM, and this is a Standard vault; move to a Premium vault, or set key_protection = \"software\" (%s)", where, said)
	case s == http.StatusBadRequest && c.perm == "create" && b.hsm && b.vault.kind != kindManagedHSM:
		// The service's wording for a Standard vault is not part of its
		// contract: any refusal of an HSM key by a vault gets the hint.
		return engine.Errorf(codes.InvalidArgument, "%s: %s; if this is a Standard vault, key_protection = \"hsm\" needs a Premium vault or a Managed HSM (or set key_protection = \"software\")", where, said)
	case s == http.StatusBadRequest:
		return engine.Errorf(codes.InvalidArgument, "%s: %s", where, said)
	case s == http.StatusUnauthorized:
		return engine.Errorf(codes.Unauthenticated, "%s: the vault did not accept the token of %s (%s); check that the identity belongs to the vault's tenant", where, b.identity, said)
	case s == http.StatusForbidden && code == "KeyDisabled":
		return engine.Errorf(codes.FailedPrecondition, "%s: the key is disabled in the vault; enable it, or delete it so that SPIRE prepares a new key (%s)", where, said)
	case s == http.StatusForbidden && strings.Contains(strings.ToLower(msg), "purge protection"):
		return engine.Errorf(codes.FailedPrecondition, "%s: the vault has purge protection, so deleted keys cannot be purged; set purge_deleted_keys = false (they are purged when the retention ends) (%s)", where, said)
	case s == http.StatusForbidden:
		return engine.Errorf(codes.PermissionDenied, "%s: %s may not %s keys; grant it %s (%s)", where, b.identity, c.perm, b.role(c.perm), said)
	case s == http.StatusNotFound:
		return engine.Errorf(codes.NotFound, "%s: %s", where, said)
	case s == http.StatusConflict:
		return engine.Errorf(codes.FailedPrecondition, "%s: %s", where, said)
	case s == http.StatusTooManyRequests:
		return engine.Errorf(codes.ResourceExhausted, "%s: throttled by the vault; the vault's request limit is shared by everything using it: retry later, or spread the load over more vaults (%d tries; %s)", where, c.tries, said)
	case s == http.StatusRequestTimeout || s >= 500:
		return engine.Errorf(codes.Unavailable, "%s: %s", where, said)
	}
	return engine.Errorf(codes.Unknown, "%s: %s", where, said)
}
