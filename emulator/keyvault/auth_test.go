package keyvault

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/google/uuid"
)

func rawRequest(t *testing.T, s *Server, method, u, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx(t), method, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestChallengeAndTokenChecks(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{ManagedHSMs: []string{"hsm-one"}, Vaults: []VaultSpec{{Name: "vault-one"}}})
	vaultURL, hsmURL := s.VaultURL("vault-one")+"keys?api-version=2025-07-01", s.VaultURL("hsm-one")+"keys?api-version=2025-07-01"

	resp, body := rawRequest(t, s, http.MethodGet, vaultURL, "")
	want := `Bearer authorization="` + strings.TrimSuffix(s.URL(), "/") + "/" + s.TenantID() + `", resource="https://vault.azure.net"`
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want || !strings.Contains(body, "AKV10000") {
		t.Errorf("anonymous vault request: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	resp, body = rawRequest(t, s, http.MethodGet, hsmURL, "")
	if resp.StatusCode != 401 || !strings.HasSuffix(resp.Header.Get("WWW-Authenticate"), `resource="https://managedhsm.azure.net"`) || body != "" {
		t.Errorf("anonymous HSM request: %d %q %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}

	tests := []struct {
		name     string
		url      string
		audience string
		lifetime time.Duration
		want     int
		msg      string
	}{
		{"valid", vaultURL, ResourceVault, time.Hour, 200, ""},
		{"expired", vaultURL, ResourceVault, -time.Hour, 401, "expired"},
		{"HSM token on a vault", vaultURL, ResourceManagedHSM, time.Hour, 401, "AKV10022"},
		{"vault token on an HSM", hsmURL, ResourceVault, time.Hour, 401, ""},
		{"valid HSM", hsmURL, ResourceManagedHSM, time.Hour, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := s.IssueToken(s.ClientID(), tt.audience, tt.lifetime)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := rawRequest(t, s, http.MethodGet, tt.url, tok)
			if resp.StatusCode != tt.want || !strings.Contains(body, tt.msg) {
				t.Errorf("%d %s, want %d containing %q", resp.StatusCode, body, tt.want, tt.msg)
			}
		})
	}
	t.Run("forged signature", func(t *testing.T) {
		other := startServer(t, Options{})
		tok, _ := other.IssueToken(s.ClientID(), ResourceVault, time.Hour)
		if resp, _ := rawRequest(t, s, http.MethodGet, vaultURL, tok); resp.StatusCode != 401 {
			t.Errorf("token of another emulator: %d, want 401", resp.StatusCode)
		}
	})
}

func TestWrongSecretIsEntraInvalidClient(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := newClientWith(t, s, "", secretCredential(t, s, s.ClientID(), "wrong"), nil)
	_, err := c.GetKey(ctx(t), "x", "", nil)
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) {
		t.Fatalf("err = %v, want *azidentity.AuthenticationFailedError", err)
	}
	if afe.RawResponse == nil || afe.RawResponse.StatusCode != 401 || !strings.Contains(err.Error(), "AADSTS7000215") || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("error = %v", err)
	}

	c = newClientWith(t, s, "", secretCredential(t, s, "11111111-2222-3333-4444-555555555555", "x"), nil)
	_, err = c.GetKey(ctx(t), "x", "", nil)
	if err == nil || !strings.Contains(err.Error(), "AADSTS700016") {
		t.Errorf("unknown client: %v", err)
	}
}

func TestRolesForbiddenByRbac(t *testing.T) {
	t.Parallel()
	const limited = "9d2e8f41-0000-4000-8000-00000000b001"
	s := startServer(t, Options{
		DeletionDelay: instantDeletion,
		ExtraClients:  map[string]string{limited: "limited-secret"},
		Roles:         map[string][]string{limited: {"keys/create", "keys/get", "keys/list", "keys/delete"}},
	})
	admin := newClient(t, s, "")
	c := newClientWith(t, s, "", secretCredential(t, s, limited, "limited-secret"), nil)
	cx := ctx(t)
	if _, err := c.CreateKey(cx, "k", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatalf("allowed create: %v", err)
	}
	_, err := c.Sign(cx, "k", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil)
	re := wantRespErr(t, err, http.StatusForbidden, CodeForbidden)
	if !strings.Contains(re.Error(), CodeForbiddenByRbac) || !strings.Contains(re.Error(), "keys/sign/action") {
		t.Errorf("403 lacks ForbiddenByRbac/action: %v", re)
	}
	if _, err := c.DeleteKey(cx, "k", nil); err != nil {
		t.Fatalf("allowed delete: %v", err)
	}
	_, err = c.PurgeDeletedKey(cx, "k", nil)
	wantRespErr(t, err, http.StatusForbidden, CodeForbidden)
	if _, err := admin.PurgeDeletedKey(cx, "k", nil); err != nil {
		t.Fatalf("unrestricted client purge: %v", err)
	}
}

func TestManagedIdentityCredential(t *testing.T) {
	// Not parallel: managed identity is configured through the environment.
	// MSAL caches managed identity tokens per process and identity, so each
	// run uses its own user-assigned identity.
	s := startServer(t, Options{ManagedIdentityClientID: uuid.NewString()})
	t.Setenv("IDENTITY_ENDPOINT", s.MSIURL())
	t.Setenv("IDENTITY_HEADER", s.IdentityHeader())
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{
		ClientOptions: clientOptions(s),
		ID:            azidentity.ClientID(s.ManagedIdentityClientID()),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newClientWith(t, s, "", cred, nil)
	if _, err := c.CreateKey(ctx(t), "mi", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatalf("CreateKey with managed identity: %v", err)
	}
	if n := s.Counts()["ManagedIdentityToken"]; n != 1 {
		t.Errorf("%d managed identity token requests, want 1", n)
	}

	// MSAL caches managed identity tokens process-wide, so the header check
	// is exercised on the wire.
	for _, h := range []string{"", "wrong"} {
		req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, s.MSIURL()+"?api-version=2019-08-01&resource=https://vault.azure.net", nil)
		if h != "" {
			req.Header.Set("X-IDENTITY-HEADER", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("X-IDENTITY-HEADER %q: %d, want 401", h, resp.StatusCode)
		}
	}
}

// TestDefaultAzureCredentialFromEnvFile runs a child process whose only
// configuration is the env file (SSL_CERT_FILE makes Go trust the CA), like
// the plugin binary launched by SPIRE.
func TestDefaultAzureCredentialFromEnvFile(t *testing.T) {
	if os.Getenv("AZUREKV_CHILD") == "1" {
		return
	}
	t.Parallel()
	s := startServer(t, Options{})
	_, envFile, err := s.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"AZUREKV_CHILD=1", "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			env = append(env, l)
		}
	}
	cmd := exec.CommandContext(ctx(t), os.Args[0], "-test.run=^TestChildDefaultAzureCredential$", "-test.count=1")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if s.Counts()["Sign"] != 1 {
		t.Errorf("counts = %v", s.Counts())
	}
}

// TestChildDefaultAzureCredential is the child of the test above.
func TestChildDefaultAzureCredential(t *testing.T) {
	if os.Getenv("AZUREKV_CHILD") != "1" {
		t.Skip("runs as a child process of TestDefaultAzureCredentialFromEnvFile")
	}
	cred, err := azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := azkeys.NewClient(os.Getenv("AZURE_KEYVAULT_URL"), cred, &azkeys.ClientOptions{DisableChallengeResourceVerification: true})
	if err != nil {
		t.Fatal(err)
	}
	cx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateKey(cx, "from-env", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	if _, err := c.Sign(cx, "from-env", "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	t.Log("child ok")
	os.Stdout.WriteString("child ok\n")
}

// TestHostNameRouting reaches two vaults as <name>.vault.azure.net through
// the main port, with the SDK's challenge resource verification left on.
func TestHostNameRouting(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{Vaults: []VaultSpec{{Name: "alpha"}, {Name: "beta", SKU: SKUStandard}}})
	hc := s.HTTPClient()
	tr := hc.Transport.(*http.Transport)
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr())
	}
	cred := secretCredential(t, s, s.ClientID(), s.ClientSecret())
	mk := func(name string) *azkeys.Client {
		o := &azkeys.ClientOptions{ClientOptions: clientOptions(s)}
		o.Transport = hc
		c, err := azkeys.NewClient(s.HostVaultURL(name), cred, o)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cx := ctx(t)
	a, b := mk("alpha"), mk("beta")
	k, err := a.CreateKey(cx, "only-in-alpha", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil)
	if err != nil {
		t.Fatalf("create in alpha: %v", err)
	}
	if !strings.HasPrefix(string(*k.Key.KID), "https://alpha.vault.azure.net/keys/only-in-alpha/") {
		t.Errorf("kid = %s", *k.Key.KID)
	}
	_, err = b.GetKey(cx, "only-in-alpha", "", nil)
	wantRespErr(t, err, http.StatusNotFound, CodeKeyNotFound)
	// beta is a standard vault: HSM keys are refused.
	_, err = b.CreateKey(cx, "hsm", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeECHSM)}, nil)
	wantRespErr(t, err, http.StatusBadRequest, CodeBadParameter)
	if got := s.VaultCounts("alpha")["CreateKey"]; got != 1 {
		t.Errorf("alpha CreateKey count %d", got)
	}
	// An unknown vault gets an error, not the first vault.
	o := &azkeys.ClientOptions{ClientOptions: clientOptions(s)}
	o.Transport = hc
	gamma, err := azkeys.NewClient("https://gamma.vault.azure.net/", cred, o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = gamma.GetKey(cx, "x", "", nil)
	wantRespErr(t, err, http.StatusNotFound, CodeVaultNotFound)
}
