package keyvault

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Token audiences (and challenge resources) of the two data planes.
const (
	ResourceVault      = "https://vault.azure.net"
	ResourceManagedHSM = "https://managedhsm.azure.net"
)

// tokenLifetime is how long issued tokens stay valid, like Entra's default.
const tokenLifetime = time.Hour

// tokenIssuer signs and checks the emulator's access tokens (ES256 JWTs).
type tokenIssuer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newTokenIssuer(key *ecdsa.PrivateKey) tokenIssuer {
	raw, _ := key.PublicKey.Bytes()
	sum := sha256.Sum256(raw)
	return tokenIssuer{key: key, kid: hex.EncodeToString(sum[:8])}
}

// tokenClaims are the claims of an access token, named as Entra names them.
type tokenClaims struct {
	jwt.RegisteredClaims
	AppID    string `json:"appid"`
	AZP      string `json:"azp,omitempty"`
	TenantID string `json:"tid"`
	OID      string `json:"oid"`
	IDType   string `json:"idtyp,omitempty"`
	Ver      string `json:"ver,omitempty"`
}

// issue signs a token for clientID in tenant, for the given audience.
// Lifetimes use the wall clock, not the emulator Clock.
func (t tokenIssuer) issue(issuer, tenant, clientID, audience string, lifetime time.Duration) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(lifetime)
	oid := uuid.NewSHA1(uuid.NameSpaceOID, []byte(tenant+"/"+clientID)).String()
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   oid,
			Audience:  jwt.ClaimStrings{audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Minute)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		AppID: clientID, AZP: clientID, TenantID: tenant, OID: oid, IDType: "app", Ver: "1.0",
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = t.kid
	s, err := tok.SignedString(t.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// check validates a bearer token for a data-plane request and returns the
// caller's client ID, or the service's 401 error.
func (t tokenIssuer) check(raw, tenant, audience string) (string, *apiError) {
	var c tokenClaims
	_, err := jwt.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return &t.key.PublicKey, nil },
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(5*time.Minute),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", unauthorized("AKV10021: Token has expired.")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return "", unauthorized("AKV10021: Token is not valid yet.")
	case err != nil:
		return "", unauthorized("AKV10016: Token validation failed: the signature or format is invalid.")
	}
	okAud := false
	for _, a := range c.Audience {
		if strings.TrimSuffix(a, "/") == audience {
			okAud = true
		}
	}
	if !okAud {
		return "", unauthorized("AKV10022: Invalid audience. Expected %s, found: %s.", audience, strings.Join(c.Audience, ","))
	}
	if !strings.EqualFold(c.TenantID, tenant) {
		return "", unauthorized("AKV10032: Invalid issuer. Expected one of https://sts.windows.net/%s/, found https://sts.windows.net/%s/.", tenant, c.TenantID)
	}
	if c.AppID == "" {
		return "", unauthorized("AKV10016: Token validation failed: no appid claim.")
	}
	return c.AppID, nil
}

func unauthorized(format string, args ...any) *apiError {
	return errf(401, CodeUnauthorized, format, args...)
}

// IssueToken signs an access token as the emulator's authority would, for
// tests that need an expired token (negative lifetime), another audience
// (ResourceVault, ResourceManagedHSM or anything else) or another client.
func (s *Server) IssueToken(clientID, audience string, lifetime time.Duration) (string, error) {
	tok, _, err := s.token.issue(s.mainURL+s.opts.TenantID+"/v2.0", s.opts.TenantID, clientID, audience, lifetime)
	return tok, err
}
