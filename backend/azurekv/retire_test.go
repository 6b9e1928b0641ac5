package azurekv

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// TestRetireDecisions checks, without any vault, what Retire asks of the
// vault: the purge is tried once and never waited for, a soft delete still
// in progress (409 ObjectIsBeingDeleted, or 404 before the deleted key
// shows) leaves it to a later listing, and a key deleted earlier is purged.
func TestRetireDecisions(t *testing.T) {
	t.Parallel()
	beingDeleted := vaultAnswer(409, "Conflict", "ObjectIsBeingDeleted", "Key is currently being deleted.")
	notFound := vaultAnswer(404, "KeyNotFound", "", "Deleted Key not found")
	tests := []struct {
		name      string
		purge     bool
		deleteErr error
		purgeErr  error
		want      []string
		code      codes.Code
	}{
		{name: "soft delete only", want: []string{"DeleteKey"}},
		{name: "deleted earlier, no purge", deleteErr: notFound, want: []string{"DeleteKey"}},
		{name: "purged at once", purge: true, want: []string{"DeleteKey", "PurgeDeletedKey"}},
		{name: "being deleted: not waited for", purge: true, purgeErr: beingDeleted, want: []string{"DeleteKey", "PurgeDeletedKey"}},
		{name: "not yet found as deleted: not waited for", purge: true, purgeErr: notFound, want: []string{"DeleteKey", "PurgeDeletedKey"}},
		{name: "deleted earlier, purged now", purge: true, deleteErr: notFound, want: []string{"DeleteKey", "PurgeDeletedKey"}},
		{name: "purge refused", purge: true, purgeErr: vaultAnswer(403, "Forbidden", "ForbiddenByRbac", "Caller is not authorized."), want: []string{"DeleteKey", "PurgeDeletedKey"}, code: codes.PermissionDenied},
		{name: "delete refused", purge: true, deleteErr: vaultAnswer(403, "Forbidden", "ForbiddenByRbac", "Caller is not authorized."), want: []string{"DeleteKey"}, code: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeVault{answer: func(_ context.Context, op, _ string) error {
				if op == "DeleteKey" {
					return tt.deleteErr
				}
				return tt.purgeErr
			}}
			b := fakeBackend(t, f, fakeVaultURL, func(o *Options) { o.PurgeDeletedKeys = tt.purge })
			err := runOp(t.Context(), b, "DeleteKey")
			if engine.Code(err) != tt.code {
				t.Fatalf("Retire = %v, want code %v", err, tt.code)
			}
			var ops []string
			for _, c := range f.called() {
				ops = append(ops, strings.Fields(c)[0])
			}
			if !slices.Equal(ops, tt.want) {
				t.Errorf("calls %v, want %v", ops, tt.want)
			}
		})
	}
}

// deletedKey is a deleted key as the vault lists it.
func deletedKey(name string, tags map[string]string) *azkeys.DeletedKeyProperties {
	kid := azkeys.ID("https://contoso.vault.azure.net/keys/" + name + "/0123456789abcdef0123456789abcdef")
	t := map[string]*string{}
	for k, v := range tags {
		t[k] = &v
	}
	return &azkeys.DeletedKeyProperties{KID: &kid, Tags: t}
}

// TestPurgeRetired checks, without any vault, the purge of retired keys at
// each listing with purge_deleted_keys: only this server's deleted keys are
// purged (not other servers', trust domains' or foreign keys), across pages;
// one still being deleted or throttled is tried again at the next listing;
// one whose purge is refused otherwise is warned about once and left alone; and
// without purge_deleted_keys the deleted keys are not even listed.
func TestPurgeRetired(t *testing.T) {
	t.Parallel()
	const u = "1b4e28ba-2fa1-41d2-883f-0016d3cca42"
	mine := "spire-key-" + u + "7-x509-CA-A"
	slow := "spire-key-" + u + "8-JWT-Signer-A"
	refused := "spire-key-" + u + "9-JWT-Signer-B"
	throttled := "spire-key-" + u + "4-JWT-Signer-C"
	theirs := "spire-key-" + u + "6-x509-CA-A"
	ours := map[string]string{tagTrustDomain: testTD, tagServerID: "server-a"}
	f := &fakeVault{
		deleted: [][]*azkeys.DeletedKeyProperties{
			{deletedKey(mine, ours), deletedKey(theirs, map[string]string{tagTrustDomain: testTD, tagServerID: "server-b"})},
			{},
			{deletedKey(slow, ours), deletedKey(refused, ours), deletedKey(throttled, ours), deletedKey("spire-key-"+u+"5-x509-CA-A", map[string]string{tagTrustDomain: "other.org", tagServerID: "server-a"}), deletedKey("unrelated", nil)},
		},
	}
	f.answer = func(_ context.Context, op, name string) error {
		switch {
		case op != "PurgeDeletedKey":
			return nil
		case name == slow:
			return vaultAnswer(409, "Conflict", "ObjectIsBeingDeleted", "Key is currently being deleted.")
		case name == refused:
			return vaultAnswer(403, "Forbidden", "ForbiddenByRbac", "Caller is not authorized.")
		case name == throttled:
			return vaultAnswer(429, "Throttled", "VaultRequestTypeLimitReached", "Too many requests.")
		}
		return nil
	}
	var logs bytes.Buffer
	b := fakeBackend(t, f, fakeVaultURL, func(o *Options) {
		o.PurgeDeletedKeys = true
		o.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: &logs})
	})
	for range 2 {
		if _, err := b.ListGenerations(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	var purged []string
	for _, c := range f.called() {
		if op, name, _ := strings.Cut(c, " "); op == "PurgeDeletedKey" {
			purged = append(purged, name)
		}
	}
	want := []string{mine, slow, refused, throttled, mine, slow, throttled}
	if !slices.Equal(purged, want) {
		t.Errorf("purged %v, want %v", purged, want)
	}
	if n := strings.Count(logs.String(), "Could not purge a retired key"); n != 1 || !strings.Contains(logs.String(), refused) {
		t.Errorf("%d purge warnings, want 1 about %s:\n%s", n, refused, logs.String())
	}

	plain := &fakeVault{deleted: f.deleted}
	if _, err := fakeBackend(t, plain, fakeVaultURL, nil).ListGenerations(t.Context()); err != nil {
		t.Fatal(err)
	}
	if calls := plain.called(); !slices.Equal(calls, []string{"ListKeys "}) {
		t.Errorf("without purge_deleted_keys the listing made %v", calls)
	}
}

// failing is a transport whose every try fails without an answer.
type failing struct{ tries int }

func (f *failing) Do(*http.Request) (*http.Response, error) {
	f.tries++
	return nil, &netError{}
}

type netError struct{}

func (*netError) Error() string { return "dial tcp 10.1.2.3:443: connect: connection refused" }

// TestUnreachableVault checks, without any vault, the error of a call whose
// every try failed without an answer: it counts the tries that were made and
// says to check the way to the vault, quoting the last failure.
func TestUnreachableVault(t *testing.T) {
	t.Parallel()
	tr := &failing{}
	ro := retryOptions()
	ro.MaxRetries, ro.RetryDelay, ro.MaxRetryDelay = 2, 1, 1
	pl := runtime.NewPipeline("test", "v0", runtime.PipelineOptions{PerRetry: []policy.Policy{&tryPolicy{metrics: engine.NopMetrics{}}}},
		&policy.ClientOptions{Transport: tr, Retry: ro})
	c := &call{op: "ListKeys", perm: "list"}
	ctx := withCall(t.Context(), c)
	req, err := runtime.NewRequest(ctx, http.MethodGet, fakeVaultURL+"keys")
	if err != nil {
		t.Fatal(err)
	}
	_, err = pl.Do(req)
	if err == nil || tr.tries != 3 {
		t.Fatalf("Do = %v after %d tries, want an error after 3", err, tr.tries)
	}
	b := fakeBackend(t, &fakeVault{}, fakeVaultURL, nil)
	wantCode(t, b.fail(ctx, c, err), codes.Unavailable, "could not be reached (3 tries", "connection refused", "contoso.vault.azure.net resolves")
}
