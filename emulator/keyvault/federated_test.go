package keyvault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer  = "https://oidc.prod-aks.example/6b0c4ef1/"
	testSubject = "system:serviceaccount:spire:spire-server"
	// workloadApp has federated credentials only, no secret.
	workloadApp = "3c1f5e7a-0000-4000-8000-00000000f1c0"
	// secretOnlyApp has a secret and no federated credential.
	secretOnlyApp = "3c1f5e7a-0000-4000-8000-00000000f1c1"
)

func federatedServer(t *testing.T) *Server {
	t.Helper()
	return startServer(t, Options{
		ExtraClients: map[string]string{secretOnlyApp: "only-secret"},
		FederatedCredentials: []FederatedCredential{
			{Issuer: testIssuer, Subject: testSubject}, // the main app
			{ClientID: workloadApp, Issuer: testIssuer, Subject: testSubject},
		},
	})
}

// workloadCredential is azidentity's WorkloadIdentityCredential for clientID,
// reading tokenFile, as on an AKS pod.
func workloadCredential(t *testing.T, s *Server, clientID, tokenFile string) *azidentity.WorkloadIdentityCredential {
	t.Helper()
	cred, err := azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
		ClientOptions:            clientOptions(s),
		ClientID:                 clientID,
		TenantID:                 s.TenantID(),
		TokenFilePath:            tokenFile,
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("NewWorkloadIdentityCredential: %v", err)
	}
	return cred
}

// TestWorkloadIdentityCredential drives the unmodified azidentity workload
// identity credential against the token endpoint: a good token file signs,
// an unknown subject is Entra's AADSTS700213, and neither the error nor
// anything else quotes the assertion.
func TestWorkloadIdentityCredential(t *testing.T) {
	t.Parallel()
	s := federatedServer(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := s.WriteFederatedTokenFile(good, testSubject); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Env(), "AZURE_FEDERATED_TOKEN_FILE="+good) {
		t.Errorf("Env lacks AZURE_FEDERATED_TOKEN_FILE=%s: %v", good, s.Env())
	}
	if fi, err := os.Stat(good); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode: %v %v, want 0600", fi, err)
	}
	for _, app := range []string{s.ClientID(), workloadApp} {
		c := newClientWith(t, s, "", workloadCredential(t, s, app, good), nil)
		name := "wi-" + app[len(app)-4:]
		if _, err := c.CreateKey(ctx(t), name, azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatalf("CreateKey as %s with workload identity: %v", app, err)
		}
		if _, err := c.Sign(ctx(t), name, "", azkeys.SignParameters{Algorithm: ptr(azkeys.SignatureAlgorithmES256), Value: make([]byte, 32)}, nil); err != nil {
			t.Fatalf("Sign as %s with workload identity: %v", app, err)
		}
	}

	wrong := filepath.Join(dir, "wrong")
	if err := s.WriteFederatedTokenFile(wrong, "system:serviceaccount:default:intruder"); err != nil {
		t.Fatal(err)
	}
	assertion, _ := os.ReadFile(wrong)
	c := newClientWith(t, s, "", workloadCredential(t, s, workloadApp, wrong), nil)
	_, err := c.GetKey(ctx(t), "wi-f1c0", "", nil)
	var afe *azidentity.AuthenticationFailedError
	if !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusUnauthorized {
		t.Fatalf("err = %v, want a 401 *azidentity.AuthenticationFailedError", err)
	}
	for _, want := range []string{"AADSTS700213", "invalid_client", "system:serviceaccount:default:intruder"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), string(assertion)) {
		t.Errorf("the error quotes the assertion: %v", err)
	}
}

// entraAnswer is the part of Entra's error body the tests look at.
type entraAnswer struct {
	status      int
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
	AccessToken string `json:"access_token"`
}

// postToken sends a client-credentials request with form and returns the
// answer.
func postToken(t *testing.T, s *Server, form url.Values) (entraAnswer, string) {
	t.Helper()
	form.Set("grant_type", "client_credentials")
	form.Set("scope", "https://vault.azure.net/.default")
	u := s.URL() + s.TenantID() + "/oauth2/v2.0/token"
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var a entraAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("token answer %d is not JSON: %s", resp.StatusCode, body)
	}
	a.status = resp.StatusCode
	return a, string(body)
}

// TestFederatedAssertionChecks sends assertions on the wire and checks
// Entra's answer for each way one can be wrong.
func TestFederatedAssertionChecks(t *testing.T) {
	t.Parallel()
	s := federatedServer(t)
	issue := func(ft FederatedToken) string {
		t.Helper()
		tok, err := s.IssueFederatedToken(ft)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := issue(FederatedToken{Subject: testSubject})
	header, claims, _ := strings.Cut(good, ".")
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + strings.Split(claims, ".")[0] + "."
	certificateStyle := issue(FederatedToken{Issuer: workloadApp, Subject: workloadApp, Audience: s.URL() + s.TenantID() + "/oauth2/v2.0/token"})

	tests := []struct {
		name      string
		client    string
		typ       string // "" means jwt-bearer
		assertion string
		secret    string
		status    int
		code      int // 0: a token is issued
		contains  string
	}{
		{name: "good, main app", client: s.ClientID(), assertion: good, status: 200},
		{name: "good, app with federated credentials only", client: workloadApp, assertion: good, status: 200},
		{name: "wrong audience", client: workloadApp, assertion: issue(FederatedToken{Subject: testSubject, Audience: "api://AzureADTokenExchange1"}), status: 401, code: 700212, contains: "audience 'api://AzureADTokenExchange1'"},
		{name: "expired", client: workloadApp, assertion: issue(FederatedToken{Subject: testSubject, Lifetime: -time.Hour}), status: 401, code: 700024, contains: "not within its valid time range"},
		{name: "not yet valid", client: workloadApp, assertion: futureToken(t), status: 401, code: 700024, contains: "not within its valid time range"},
		{name: "unknown subject", client: workloadApp, assertion: issue(FederatedToken{Subject: "system:serviceaccount:spire:other"}), status: 401, code: 700213, contains: "subject 'system:serviceaccount:spire:other'"},
		{name: "subject of another case", client: workloadApp, assertion: issue(FederatedToken{Subject: strings.ToUpper(testSubject)}), status: 401, code: 700213},
		{name: "unknown issuer", client: workloadApp, assertion: issue(FederatedToken{Issuer: strings.TrimSuffix(testIssuer, "/"), Subject: testSubject}), status: 401, code: 700211, contains: "issuer '" + strings.TrimSuffix(testIssuer, "/") + "'"},
		{name: "app without federated credentials", client: secretOnlyApp, assertion: good, status: 401, code: 70025},
		{name: "malformed", client: workloadApp, assertion: "not.a-jwt", status: 400, code: 50027},
		{name: "two parts", client: workloadApp, assertion: header + "." + strings.Split(claims, ".")[0], status: 400, code: 50027},
		{name: "unsigned", client: workloadApp, assertion: unsigned, status: 400, code: 50027},
		{name: "wrong assertion type", client: workloadApp, typ: "urn:ietf:params:oauth:client-assertion-type:saml2-bearer", assertion: good, status: 400, code: 90011},
		{name: "certificate assertion", client: workloadApp, assertion: certificateStyle, status: 401, code: 700027},
		{name: "secret for an app without one", client: workloadApp, secret: "guess", status: 401, code: 7000215},
		{name: "nothing", client: workloadApp, status: 401, code: 7000216},
		{name: "unknown app", client: "3c1f5e7a-0000-4000-8000-00000000dead", assertion: good, status: 400, code: 700016},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := url.Values{"client_id": {tt.client}}
			if tt.assertion != "" {
				typ := tt.typ
				if typ == "" {
					typ = jwtBearer
				}
				form.Set("client_assertion_type", typ)
				form.Set("client_assertion", tt.assertion)
			}
			if tt.secret != "" {
				form.Set("client_secret", tt.secret)
			}
			a, body := postToken(t, s, form)
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, body)
			}
			if tt.code == 0 {
				if _, err := s.token.check(a.AccessToken, s.TenantID(), ResourceVault); err != nil {
					t.Errorf("issued token does not pass the vault's check: %v", err)
				}
				return
			}
			prefix := "AADSTS" + strconv.Itoa(tt.code) + ": "
			if len(a.Codes) != 1 || a.Codes[0] != tt.code || !strings.HasPrefix(a.Description, prefix) || !strings.Contains(a.Description, tt.contains) {
				t.Errorf("answer %s, want error_codes [%d], a description starting %q containing %q", body, tt.code, prefix, tt.contains)
			}
			if want := map[int]string{400: "invalid_request", 401: "invalid_client"}[tt.status]; tt.code != 700016 && a.Error != want {
				t.Errorf("error %q, want %q", a.Error, want)
			}
			if tt.assertion != "" && len(tt.assertion) > 20 && strings.Contains(body, tt.assertion) {
				t.Errorf("the answer quotes the assertion: %s", body)
			}
		})
	}
}

// futureToken is a token whose validity starts in an hour, signed by a key
// of the test's own (the emulator does not check signatures).
func futureToken(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(time.Hour)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Issuer: testIssuer, Subject: testSubject, Audience: jwt.ClaimStrings{FederatedAudience},
		NotBefore: jwt.NewNumericDate(start), ExpiresAt: jwt.NewNumericDate(start.Add(time.Hour)),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestFederatedCredentialOptions checks the options' validation and the
// token helper's refusals.
func TestFederatedCredentialOptions(t *testing.T) {
	t.Parallel()
	for _, fics := range [][]FederatedCredential{
		{{Issuer: testIssuer}},
		{{Subject: testSubject}},
		slices.Repeat([]FederatedCredential{{Issuer: testIssuer, Subject: testSubject}}, maxFederatedCredentials+1),
	} {
		if _, err := (Options{FederatedCredentials: fics}).normalize(); err == nil {
			t.Errorf("options with federated credentials %.80v accepted", fics)
		}
	}
	o, err := (Options{FederatedCredentials: []FederatedCredential{{Issuer: testIssuer, Subject: testSubject}}}).normalize()
	if err != nil || o.FederatedCredentials[0].ClientID != DefaultClientID {
		t.Errorf("normalize = %+v, %v; want the main app's client ID filled in", o.FederatedCredentials, err)
	}

	s := startServer(t, Options{})
	if _, err := s.IssueFederatedToken(FederatedToken{Subject: testSubject}); err == nil {
		t.Error("IssueFederatedToken without an issuer or a federated credential succeeded")
	}
	if err := s.WriteFederatedTokenFile(filepath.Join(t.TempDir(), "t"), testSubject); err == nil {
		t.Error("WriteFederatedTokenFile without a federated credential succeeded")
	}
	for _, l := range s.Env() {
		if strings.HasPrefix(l, "AZURE_FEDERATED_TOKEN_FILE=") {
			t.Errorf("Env offers %s though no token file was written", l)
		}
	}
}
