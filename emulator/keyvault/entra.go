package keyvault

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// entraError is the OAuth error body Entra ID returns.
type entraError struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri,omitempty"`
}

func writeEntraError(w http.ResponseWriter, status int, oauthErr string, code int, desc string) {
	trace, corr := uuid.NewString(), uuid.NewString()
	ts := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	writeJSON(w, status, entraError{
		Error:            oauthErr,
		ErrorDescription: fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", code, desc, trace, corr, ts),
		ErrorCodes:       []int{code},
		Timestamp:        ts,
		TraceID:          trace,
		CorrelationID:    corr,
		ErrorURI:         fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", code),
	})
}

// authorityBase is the authority host as the client addressed it, so the
// OpenID issuer matches the authority MSAL used.
func authorityBase(r *http.Request) string { return "https://" + r.Host + "/" }

// tenantKnown reports whether the path's tenant is ours; "common" and
// "organizations" are accepted like multi-tenant authorities.
func (s *Server) tenantKnown(t string) bool {
	return strings.EqualFold(t, s.opts.TenantID) || t == "organizations" || t == "common"
}

// serveOpenIDConfig answers GET /{tenant}/v2.0/.well-known/openid-configuration.
func (s *Server) serveOpenIDConfig(w http.ResponseWriter, r *http.Request, tenant string) {
	if !s.tenantKnown(tenant) {
		writeEntraError(w, http.StatusBadRequest, "invalid_tenant", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	base := authorityBase(r)
	t := s.opts.TenantID
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base + t + "/v2.0",
		"authorization_endpoint":                base + t + "/oauth2/v2.0/authorize",
		"token_endpoint":                        base + t + "/oauth2/v2.0/token",
		"device_authorization_endpoint":         base + t + "/oauth2/v2.0/devicecode",
		"jwks_uri":                              base + t + "/discovery/v2.0/keys",
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"tenant_region_scope":                   "NA",
		"cloud_instance_name":                   "microsoftonline.com",
	})
}

// serveJWKS answers GET /{tenant}/discovery/v2.0/keys with the token
// signing key, so strict clients can verify the emulator's tokens.
func (s *Server) serveJWKS(w http.ResponseWriter) {
	raw, _ := s.token.key.PublicKey.Bytes()
	size := (len(raw) - 1) / 2
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "EC", "use": "sig", "alg": "ES256", "crv": "P-256", "kid": s.token.kid,
		"x": b64(raw[1 : 1+size]), "y": b64(raw[1+size:]),
	}}})
}

// audienceFor maps a requested scope or resource to a data-plane audience.
func audienceFor(scope string) (string, bool) {
	for _, f := range strings.Fields(scope) {
		f = strings.TrimSuffix(f, "/.default")
		f = strings.TrimSuffix(f, "/")
		switch strings.ToLower(f) {
		case ResourceVault:
			return ResourceVault, true
		case ResourceManagedHSM:
			return ResourceManagedHSM, true
		}
	}
	return "", false
}

// clientSecretFor returns the secret of an application that has one.
func (s *Server) clientSecretFor(clientID string) (string, bool) {
	if strings.EqualFold(clientID, s.opts.ClientID) {
		return s.clientSecret, true
	}
	for id, sec := range s.opts.ExtraClients {
		if strings.EqualFold(id, clientID) {
			return sec, true
		}
	}
	return "", false
}

// appKnown reports whether clientID is a registered application: one with a
// secret, or one with only federated credentials.
func (s *Server) appKnown(clientID string) bool {
	_, ok := s.clientSecretFor(clientID)
	return ok || len(s.federatedCredentialsOf(clientID)) > 0
}

// serveToken answers the client-credentials grant like Entra ID, with a
// client secret or a federated token as client assertion, including its
// error codes for an unknown tenant, client or resource, a wrong secret and
// a refused assertion.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request, tenant string) {
	s.counts.add("", "Token")
	if r.Method != http.MethodPost {
		writeEntraError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeEntraError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if !s.tenantKnown(tenant) {
		writeEntraError(w, http.StatusBadRequest, "invalid_request", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeEntraError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return
	}
	clientID, secret, basic := r.BasicAuth()
	if !basic {
		clientID, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if !s.appKnown(clientID) {
		writeEntraError(w, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, s.opts.TenantID))
		return
	}
	assertionType, assertion := r.PostForm.Get("client_assertion_type"), r.PostForm.Get("client_assertion")
	switch {
	case assertionType != "" || assertion != "":
		if f := s.checkAssertion(clientID, assertionType, assertion); f != nil {
			f.write(w)
			return
		}
	case secret == "":
		writeEntraError(w, http.StatusUnauthorized, "invalid_client", 7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	default:
		want, hasSecret := s.clientSecretFor(clientID)
		if !hasSecret || subtle.ConstantTimeCompare([]byte(secret), []byte(want)) != 1 {
			writeEntraError(w, http.StatusUnauthorized, "invalid_client", 7000215,
				fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
			return
		}
	}
	scope := r.PostForm.Get("scope")
	aud, ok := audienceFor(scope)
	if !ok {
		writeEntraError(w, http.StatusBadRequest, "invalid_resource", 500011,
			fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", strings.Fields(scope + " -")[0], s.opts.TenantID))
		return
	}
	tok, _, err := s.token.issue(authorityBase(r)+s.opts.TenantID+"/v2.0", s.opts.TenantID, clientID, aud, tokenLifetime)
	if err != nil {
		writeEntraError(w, http.StatusInternalServerError, "server_error", 50000, "There was an error issuing a token.")
		return
	}
	secs := int(tokenLifetime / time.Second)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok,
	})
}

// serveMSIToken answers the App Service managed-identity protocol
// (api-version 2019-08-01, X-IDENTITY-HEADER).
func (s *Server) serveMSIToken(w http.ResponseWriter, r *http.Request) {
	s.counts.add("", "ManagedIdentityToken")
	if r.Method != http.MethodGet {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"statusCode": 405, "message": "Method not allowed"})
		return
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("X-IDENTITY-HEADER")), []byte(s.identityHeader)) != 1 {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"statusCode": 401, "message": "Unauthorized: the X-IDENTITY-HEADER header is missing or wrong."})
		return
	}
	q := r.URL.Query()
	resource := q.Get("resource")
	aud, ok := audienceFor(resource)
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": fmt.Sprintf("AADSTS500011: The resource principal named %s was not found in the tenant.", resource)})
		return
	}
	clientID := s.opts.ManagedIdentityClientID
	if id := q.Get("client_id"); id != "" {
		clientID = id
	}
	tok, exp, err := s.token.issue(s.mainURL+s.opts.TenantID+"/v2.0", s.opts.TenantID, clientID, aud, tokenLifetime)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"statusCode": 500, "message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": tok,
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     resource,
		"token_type":   "Bearer",
		"client_id":    clientID,
	})
}
