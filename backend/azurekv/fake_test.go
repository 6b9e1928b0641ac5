package azurekv

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/hashicorp/go-hclog"
)

// fakeVault is a cloudClient that answers from a script: each operation
// (by its Key Vault name, as the backend's calls name it) returns what its
// function says, and every call is recorded. An operation without a
// function succeeds with an empty answer. No network is involved: the fast
// tests of error mapping and retry decisions run on it.
type fakeVault struct {
	mu    sync.Mutex
	calls []string
	// answer returns the error of operation op on key name; ctx carries the
	// backend's call record, which a script may fill as the per-try policy
	// would (tries, last status).
	answer func(ctx context.Context, op, name string) error
	// list and deleted are the pages the listings return.
	list    [][]*azkeys.KeyProperties
	deleted [][]*azkeys.DeletedKeyProperties
}

var _ cloudClient = (*fakeVault)(nil)

func (f *fakeVault) do(ctx context.Context, op, name string) error {
	f.mu.Lock()
	f.calls = append(f.calls, op+" "+name)
	answer := f.answer
	f.mu.Unlock()
	if answer == nil {
		return nil
	}
	return answer(ctx, op, name)
}

// called returns the calls made so far, as "op name".
func (f *fakeVault) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// pager serves pages in order through the SDK's own pager.
func pager[T any](pages int, fetch func(ctx context.Context, i int) (T, error)) *runtime.Pager[T] {
	i := 0
	return runtime.NewPager(runtime.PagingHandler[T]{
		More: func(T) bool { return i < pages },
		Fetcher: func(ctx context.Context, _ *T) (T, error) {
			page, err := fetch(ctx, i)
			i++
			return page, err
		},
	})
}

func (f *fakeVault) NewListKeyPropertiesPager(*azkeys.ListKeyPropertiesOptions) *runtime.Pager[azkeys.ListKeyPropertiesResponse] {
	return pager(max(len(f.list), 1), func(ctx context.Context, i int) (azkeys.ListKeyPropertiesResponse, error) {
		var r azkeys.ListKeyPropertiesResponse
		if err := f.do(ctx, "ListKeys", ""); err != nil {
			return r, err
		}
		if i < len(f.list) {
			r.Value = f.list[i]
		}
		return r, nil
	})
}

func (f *fakeVault) NewListDeletedKeyPropertiesPager(*azkeys.ListDeletedKeyPropertiesOptions) *runtime.Pager[azkeys.ListDeletedKeyPropertiesResponse] {
	return pager(max(len(f.deleted), 1), func(ctx context.Context, i int) (azkeys.ListDeletedKeyPropertiesResponse, error) {
		var r azkeys.ListDeletedKeyPropertiesResponse
		if err := f.do(ctx, "ListDeletedKeys", ""); err != nil {
			return r, err
		}
		if i < len(f.deleted) {
			r.Value = f.deleted[i]
		}
		return r, nil
	})
}

func (f *fakeVault) CreateKey(ctx context.Context, name string, _ azkeys.CreateKeyParameters, _ *azkeys.CreateKeyOptions) (azkeys.CreateKeyResponse, error) {
	return azkeys.CreateKeyResponse{}, f.do(ctx, "CreateKey", name)
}

func (f *fakeVault) GetKey(ctx context.Context, name, _ string, _ *azkeys.GetKeyOptions) (azkeys.GetKeyResponse, error) {
	return azkeys.GetKeyResponse{}, f.do(ctx, "GetKey", name)
}

func (f *fakeVault) UpdateKey(ctx context.Context, name, _ string, _ azkeys.UpdateKeyParameters, _ *azkeys.UpdateKeyOptions) (azkeys.UpdateKeyResponse, error) {
	return azkeys.UpdateKeyResponse{}, f.do(ctx, "UpdateKey", name)
}

func (f *fakeVault) Sign(ctx context.Context, name, _ string, _ azkeys.SignParameters, _ *azkeys.SignOptions) (azkeys.SignResponse, error) {
	return azkeys.SignResponse{}, f.do(ctx, "Sign", name)
}

func (f *fakeVault) DeleteKey(ctx context.Context, name string, _ *azkeys.DeleteKeyOptions) (azkeys.DeleteKeyResponse, error) {
	return azkeys.DeleteKeyResponse{}, f.do(ctx, "DeleteKey", name)
}

func (f *fakeVault) PurgeDeletedKey(ctx context.Context, name string, _ *azkeys.PurgeDeletedKeyOptions) (azkeys.PurgeDeletedKeyResponse, error) {
	return azkeys.PurgeDeletedKeyResponse{}, f.do(ctx, "PurgeDeletedKey", name)
}

// fakeBackend is a backend of vault URL u over f, for server-a of testTD.
func fakeBackend(t *testing.T, f *fakeVault, u string, edit func(*Options)) *Backend {
	t.Helper()
	v, err := parseVaultURI(u)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		VaultURL: u, Identity: "app 11111111-2222-3333-4444-555555555555 of tenant contoso.onmicrosoft.com (client secret)",
		TrustDomain: testTD, ServerID: "server-a",
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}}),
	}
	if edit != nil {
		edit(&o)
	}
	return newBackend(o, v, f, &cloudClock{})
}

// vaultAnswer is the error azkeys returns for an HTTP answer of the vault:
// status, the error body's code, inner code and message, built by azcore
// from the response as for a real one.
func vaultAnswer(status int, code, inner, msg string) error {
	var body struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError *struct {
				Code string `json:"code"`
			} `json:"innererror,omitempty"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, msg
	if inner != "" {
		body.Error.InnerError = &struct {
			Code string `json:"code"`
		}{inner}
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodGet, "https://vault.example/keys", nil)
	resp := &http.Response{
		StatusCode: status, Status: http.StatusText(status), Request: req,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   io.NopCloser(strings.NewReader(string(b))),
	}
	return runtime.NewResponseError(resp)
}
