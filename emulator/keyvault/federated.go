package keyvault

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Workload identity federation: Entra exchanges a token of an external
// identity provider (a Kubernetes service account token on AKS, a CI
// system's OIDC token) for an access token of an application, when the
// application has a federated identity credential naming the token's issuer
// and subject. azidentity's WorkloadIdentityCredential, which
// DefaultAzureCredential tries after the environment credential, sends the
// file named by AZURE_FEDERATED_TOKEN_FILE as a jwt-bearer client assertion
// of a client-credentials request.

// FederatedAudience is the audience Entra expects in an external token
// presented to a federated identity credential (the default, and in the
// public cloud the only recommended, audience of such a credential).
const FederatedAudience = "api://AzureADTokenExchange"

const (
	// jwtBearer is the client_assertion_type of a JWT client assertion
	// (RFC 7523), for certificates and federated tokens alike.
	jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// federatedTokenLifetime is the lifetime of the tokens
	// WriteFederatedTokenFile writes: a projected service account token's
	// default.
	federatedTokenLifetime = time.Hour
	// assertionSkew is the clock skew allowed on an assertion's exp and nbf.
	assertionSkew = 5 * time.Minute
	// maxFederatedCredentials is Entra's limit per application.
	maxFederatedCredentials = 20
	// federationDocs is the link Entra appends to its federation errors.
	federationDocs = "https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
)

// entraFailure is an Entra error answer not yet written: the HTTP status,
// the OAuth error, the AADSTS code and its description.
type entraFailure struct {
	status   int
	oauthErr string
	code     int
	desc     string
}

func (f *entraFailure) write(w http.ResponseWriter) {
	writeEntraError(w, f.status, f.oauthErr, f.code, f.desc)
}

// invalidClient is Entra's 401 for a credential it refuses.
func invalidClient(code int, format string, args ...any) *entraFailure {
	return &entraFailure{http.StatusUnauthorized, "invalid_client", code, fmt.Sprintf(format, args...)}
}

// invalidRequest is Entra's 400 for a request it cannot read.
func invalidRequest(code int, format string, args ...any) *entraFailure {
	return &entraFailure{http.StatusBadRequest, "invalid_request", code, fmt.Sprintf(format, args...)}
}

// entraTime formats a time as Entra's messages do.
func entraTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000Z") }

// checkAssertion validates a client assertion of clientID as Entra validates
// a federated identity credential's external token: a well-formed signed
// JWT, within its validity period, whose issuer, subject and audience match
// one of the application's federated credentials. The signature is not
// checked against the issuer's keys (that would need the issuer's OIDC
// discovery document and JWKS over the network); an emulator test that
// needs a refused signature has no way to get one. Error answers never quote
// the assertion, only its claims, like Entra's.
func (s *Server) checkAssertion(clientID, assertionType, assertion string) *entraFailure {
	if assertionType != jwtBearer {
		return invalidRequest(90011, "Unexpected client assertion type.")
	}
	var c jwt.RegisteredClaims
	tok, parts, err := jwt.NewParser().ParseUnverified(assertion, &c)
	if err != nil || len(parts) != 3 || parts[2] == "" || tok.Method.Alg() == "none" || c.ExpiresAt == nil {
		return invalidRequest(50027, "JWT token is invalid or malformed.")
	}
	if c.Issuer == clientID && c.Subject == clientID {
		// iss = sub = the app is a certificate assertion; the emulator has
		// no certificate credentials.
		kid, _ := tok.Header["kid"].(string)
		return invalidClient(700027, "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '%s'. Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]", kid, clientID)
	}
	now := time.Now()
	validFrom := time.Unix(0, 0)
	if c.NotBefore != nil {
		validFrom = c.NotBefore.Time
	}
	if now.After(c.ExpiresAt.Add(assertionSkew)) || now.Add(assertionSkew).Before(validFrom) {
		return invalidClient(700024, "Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
			entraTime(now), entraTime(validFrom), entraTime(c.ExpiresAt.Time))
	}
	fics := s.federatedCredentialsOf(clientID)
	if len(fics) == 0 {
		return invalidClient(70025, "Client application has no configured federated identity credentials.")
	}
	// Entra matches issuer and subject exactly (case-sensitively, and a
	// trailing slash counts), issuer first.
	var sameIssuer []FederatedCredential
	for _, f := range fics {
		if f.Issuer == c.Issuer {
			sameIssuer = append(sameIssuer, f)
		}
	}
	if len(sameIssuer) == 0 {
		return invalidClient(700211, "No matching federated identity record found for presented assertion issuer '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. %s", c.Issuer, federationDocs)
	}
	matched := false
	for _, f := range sameIssuer {
		matched = matched || f.Subject == c.Subject
	}
	if !matched {
		return invalidClient(700213, "No matching federated identity record found for presented assertion subject '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. %s", c.Subject, federationDocs)
	}
	for _, a := range c.Audience {
		if a == FederatedAudience {
			return nil
		}
	}
	return invalidClient(700212, "No matching federated identity record found for presented assertion audience '%s'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. %s", strings.Join(c.Audience, ","), federationDocs)
}

// federatedCredentialsOf returns the federated credentials of clientID.
func (s *Server) federatedCredentialsOf(clientID string) []FederatedCredential {
	var out []FederatedCredential
	for _, f := range s.opts.FederatedCredentials {
		if strings.EqualFold(f.ClientID, clientID) {
			out = append(out, f)
		}
	}
	return out
}

// FederatedToken describes an external identity provider's token for
// IssueFederatedToken.
type FederatedToken struct {
	// Issuer is the token's iss. Default: the issuer of the first federated
	// credential with this Subject, else of the first federated credential.
	Issuer string
	// Subject is the token's sub, for example
	// system:serviceaccount:<namespace>:<service account>.
	Subject string
	// Audience is the token's aud. Default FederatedAudience.
	Audience string
	// Lifetime is how long the token is valid from now. Default one hour;
	// negative for a token that has already expired.
	Lifetime time.Duration
}

// IssueFederatedToken signs a token as the external identity provider of a
// federated credential would (ES256, with iss, sub, aud, iat, nbf, exp and
// jti), for tests that present one to the token endpoint directly, and for
// WriteFederatedTokenFile. The signing key is the emulator's own stand-in
// for the issuer's key; the token endpoint does not verify it.
func (s *Server) IssueFederatedToken(ft FederatedToken) (string, error) {
	if ft.Subject == "" {
		return "", fmt.Errorf("issue federated token: no subject")
	}
	if ft.Issuer == "" {
		for _, f := range s.opts.FederatedCredentials {
			if f.Subject == ft.Subject {
				ft.Issuer = f.Issuer
				break
			}
		}
	}
	if ft.Issuer == "" && len(s.opts.FederatedCredentials) > 0 {
		ft.Issuer = s.opts.FederatedCredentials[0].Issuer
	}
	if ft.Issuer == "" {
		return "", fmt.Errorf("issue federated token for %q: no issuer given and no federated credential configured", ft.Subject)
	}
	if ft.Audience == "" {
		ft.Audience = FederatedAudience
	}
	if ft.Lifetime == 0 {
		ft.Lifetime = federatedTokenLifetime
	}
	now := time.Now()
	issued := now
	if ft.Lifetime < 0 {
		// An expired token was issued an hour before it expired.
		issued = now.Add(ft.Lifetime - federatedTokenLifetime)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Issuer:    ft.Issuer,
		Subject:   ft.Subject,
		Audience:  jwt.ClaimStrings{ft.Audience},
		IssuedAt:  jwt.NewNumericDate(issued),
		NotBefore: jwt.NewNumericDate(issued),
		ExpiresAt: jwt.NewNumericDate(now.Add(ft.Lifetime)),
		ID:        uuid.NewString(),
	})
	tok.Header["kid"] = s.federated.kid
	signed, err := tok.SignedString(s.federated.key)
	if err != nil {
		return "", fmt.Errorf("issue federated token for %q: %w", ft.Subject, err)
	}
	return signed, nil
}

// WriteFederatedTokenFile writes a one-hour token for subject to path (mode
// 0600), as the kubelet projects a service account token into a pod, and
// remembers path for AZURE_FEDERATED_TOKEN_FILE in Env. The issuer is that
// of the federated credential with this subject, else of the first one, so
// that an unknown subject gets Entra's subject error. Call it again to renew
// the token before it expires: the kubelet renews at 80% of the lifetime,
// and azidentity rereads the file every 10 minutes.
func (s *Server) WriteFederatedTokenFile(path, subject string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("federated token file: %w", err)
	}
	tok, err := s.IssueFederatedToken(FederatedToken{Subject: subject})
	if err != nil {
		return err
	}
	if err := writeFileAtomic(abs, []byte(tok), 0o600); err != nil {
		return err
	}
	s.persistMu.Lock()
	s.federatedTokenFile = abs
	s.persistMu.Unlock()
	return nil
}

// FederatedTokenRenewal is how often a long-running emulator should call
// WriteFederatedTokenFile again: at 80% of the token's lifetime, like the
// kubelet.
const FederatedTokenRenewal = federatedTokenLifetime * 8 / 10
