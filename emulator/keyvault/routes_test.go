package keyvault

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// TestGetKeyPathForms sends GetKey on the wire in every form the service
// accepts: azkeys always adds a trailing slash for the latest version
// (GET /keys/{name}/), other clients (curl, older SDKs, the REST reference)
// send none.
func TestGetKeyPathForms(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := newClient(t, s, "")
	cx := ctx(t)
	v1, err := c.CreateKey(cx, "Slashy", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := c.CreateKey(cx, "Slashy", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), Curve: ptr(azkeys.CurveNameP384)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.IssueToken(s.ClientID(), ResourceVault, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const q = "?api-version=2025-07-01"
	latest, first := string(*v2.Key.KID), string(*v1.Key.KID)
	tests := []struct {
		name, method, path string
		status             int
		code, kid          string
	}{
		{"latest without slash", http.MethodGet, "keys/Slashy" + q, 200, "", latest},
		{"latest with slash", http.MethodGet, "keys/Slashy/" + q, 200, "", latest},
		{"name in another case", http.MethodGet, "keys/slashy" + q, 200, "", latest},
		{"version without slash", http.MethodGet, "keys/Slashy/" + v1.Key.KID.Version() + q, 200, "", first},
		{"version with slash", http.MethodGet, "keys/Slashy/" + v1.Key.KID.Version() + "/" + q, 200, "", first},
		{"missing key without slash", http.MethodGet, "keys/absent" + q, 404, CodeKeyNotFound, ""},
		{"missing key with slash", http.MethodGet, "keys/absent/" + q, 404, CodeKeyNotFound, ""},
		{"no api-version", http.MethodGet, "keys/Slashy", 400, CodeBadParameter, ""},
		{"update without slash", http.MethodPatch, "keys/Slashy" + q, 200, "", latest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body *strings.Reader
			if tt.method == http.MethodPatch {
				body = strings.NewReader(`{"tags":{"form":"no-slash"}}`)
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequestWithContext(cx, tt.method, s.URL()+tt.path, body)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := s.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct {
				Key *struct {
					Kid string `json:"kid"`
					Crv string `json:"crv"`
				} `json:"key"`
				Tags  map[string]string `json:"tags"`
				Error *struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("%d, body not JSON: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%+v)", resp.StatusCode, tt.status, got.Error)
			}
			if tt.code != "" {
				if got.Error == nil || got.Error.Code != tt.code {
					t.Fatalf("error %+v, want code %s", got.Error, tt.code)
				}
				return
			}
			if got.Key == nil || got.Key.Kid != tt.kid {
				t.Fatalf("kid %+v, want %s", got.Key, tt.kid)
			}
			if tt.method == http.MethodPatch && got.Tags["form"] != "no-slash" {
				t.Errorf("tags after PATCH: %v", got.Tags)
			}
		})
	}
	// The SDK sees the same key as the slash-less request did.
	got, err := c.GetKey(cx, "Slashy", "", nil)
	if err != nil || string(*got.Key.KID) != latest || *got.Tags["form"] != "no-slash" {
		t.Fatalf("azkeys GetKey after the raw requests: %v %v", err, got.Tags)
	}
}

// TestUnroutedRequests checks the service's answers to requests that match
// no operation, which come before authentication: 405 MethodNotAllowed on a
// resource the service knows, 400 BadParameter on any other path, both with
// Key Vault's JSON error body; and that path words match in any case.
func TestUnroutedRequests(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	const q = "?api-version=2025-07-01"
	for _, tt := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodDelete, "keys" + q, 405, CodeMethodNotAllowed},
		{http.MethodPost, "keys/k" + q, 405, CodeMethodNotAllowed},
		{http.MethodHead, "keys/k" + q, 405, ""}, // no body on HEAD
		{http.MethodPut, "keys/k/v1" + q, 405, CodeMethodNotAllowed},
		{http.MethodPost, "keys/k/v1/create" + q, 405, CodeMethodNotAllowed},
		{http.MethodGet, "deletedkeys/k/recover" + q, 405, CodeMethodNotAllowed},
		{http.MethodGet, "rng" + q, 400, CodeBadParameter},
		{http.MethodGet, "keys/k/v1/sign/x" + q, 400, CodeBadParameter},
		{http.MethodGet, "secrets/s" + q, 400, CodeBadParameter},
		// Routed (then refused for want of a token): words in any case.
		{http.MethodPost, "keys/k/WrapKey" + q, 401, ""},
		{http.MethodGet, "keys/k/Versions" + q, 401, ""},
		{http.MethodPost, "Keys/Restore" + q, 401, ""},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx(t), tt.method, s.URL()+tt.path, strings.NewReader(""))
			resp, err := s.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.code == "" {
				return
			}
			var got struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Error.Code != tt.code || got.Error.Message == "" {
				t.Fatalf("body %+v (%v), want code %s", got, err, tt.code)
			}
		})
	}
}

// TestAPIVersions checks the api-versions each service accepts: the
// published list from 7.0 on a vault, from 7.2 on a Managed HSM, which lags
// on the newest preview; any other is refused with the service's
// BadParameter naming the latest version. The official client's own
// version (azkeys sends its default) works on both.
func TestAPIVersions(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{Vaults: []VaultSpec{{Name: "vault"}}, ManagedHSMs: []string{"mhsm"}})
	for _, tt := range []struct {
		vault, resource, version string
		ok                       bool
	}{
		{"vault", ResourceVault, "7.0", true},
		{"vault", ResourceVault, "7.4-preview.1", true},
		{"vault", ResourceVault, "2025-07-01", true},
		{"vault", ResourceVault, "2026-01-01-preview", true},
		{"vault", ResourceVault, "7.7", false},
		{"vault", ResourceVault, "2024-01-01", false},
		{"vault", ResourceVault, "2016-10-01", false},
		{"mhsm", ResourceManagedHSM, "7.2", true},
		{"mhsm", ResourceManagedHSM, "2025-07-01", true},
		{"mhsm", ResourceManagedHSM, "7.1", false},
		{"mhsm", ResourceManagedHSM, "2026-01-01-preview", false},
	} {
		t.Run(tt.vault+" "+tt.version, func(t *testing.T) {
			tok, err := s.IssueToken(s.ClientID(), tt.resource, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, s.VaultURL(tt.vault)+"keys/absent?api-version="+tt.version, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := s.HTTPClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&got)
			refused := resp.StatusCode == http.StatusBadRequest && got.Error.Code == CodeBadParameter &&
				strings.Contains(got.Error.Message, "The specified version ("+tt.version+") is not recognized") &&
				strings.Contains(got.Error.Message, "latest supported version ("+latestAPIVersion+")")
			if tt.ok && (resp.StatusCode != http.StatusNotFound || got.Error.Code != CodeKeyNotFound) {
				t.Errorf("answer %d %+v, want 404 KeyNotFound", resp.StatusCode, got.Error)
			}
			if !tt.ok && !refused {
				t.Errorf("answer %d %+v, want the service's refusal of the version", resp.StatusCode, got.Error)
			}
		})
	}
	for _, vault := range []string{"vault", "mhsm"} {
		_, err := newClient(t, s, vault).GetKey(ctx(t), "absent", "", nil)
		wantRespErr(t, err, http.StatusNotFound, CodeKeyNotFound)
	}
}
