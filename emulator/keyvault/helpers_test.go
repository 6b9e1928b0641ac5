package keyvault

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// startServer starts an emulator for one test.
func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if testing.Verbose() && opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// clientOptions returns azcore options that trust the emulator CA and
// retry quickly.
func clientOptions(s *Server) azcore.ClientOptions {
	return azcore.ClientOptions{
		Transport: s.HTTPClient(),
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.AuthorityHost()},
		Retry:     policy.RetryOptions{RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 2 * time.Second},
	}
}

// secretCredential is the client-secret credential of the emulator's app.
func secretCredential(t *testing.T, s *Server, clientID, secret string) azcore.TokenCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(s.TenantID(), clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            clientOptions(s),
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("NewClientSecretCredential: %v", err)
	}
	return cred
}

// newClient returns an unmodified azkeys client for a vault, authenticated
// with the client secret.
func newClient(t *testing.T, s *Server, vault string) *azkeys.Client {
	t.Helper()
	return newClientWith(t, s, vault, secretCredential(t, s, s.ClientID(), s.ClientSecret()), nil)
}

func newClientWith(t *testing.T, s *Server, vault string, cred azcore.TokenCredential, tweak func(*azkeys.ClientOptions)) *azkeys.Client {
	t.Helper()
	u := s.URL()
	if vault != "" {
		u = s.VaultURL(vault)
	}
	o := &azkeys.ClientOptions{ClientOptions: clientOptions(s), DisableChallengeResourceVerification: true}
	if tweak != nil {
		tweak(o)
	}
	c, err := azkeys.NewClient(u, cred, o)
	if err != nil {
		t.Fatalf("azkeys.NewClient: %v", err)
	}
	return c
}

// wantRespErr asserts err is an *azcore.ResponseError with status and code.
func wantRespErr(t *testing.T, err error, status int, code string) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v, want *azcore.ResponseError %d %s", err, status, code)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("ResponseError = %d %s, want %d %s (%v)", re.StatusCode, re.ErrorCode, status, code, err)
	}
	return re
}

func ptr[T any](v T) *T { return &v }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// instantDeletion is Options.DeletionDelay for tests that do not exercise
// the asynchronous soft delete: a deleted key is found and purgeable at once.
const instantDeletion = -1
