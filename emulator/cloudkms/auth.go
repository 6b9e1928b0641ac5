package cloudkms

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Identity works the way it does against Google:
//
//   - The emulator issues service accounts (an RSA key per email) and writes
//     them as standard service account JSON files whose token_uri points at
//     the emulator's loopback token endpoint.
//   - The official Go client with such a file signs a self-signed JWT
//     (iss = sub = client_email, RS256, kid = private_key_id) and sends it as
//     "authorization: Bearer <jwt>" on every gRPC call; the emulator verifies
//     it against the key it issued.
//   - Clients that use the OAuth2 JWT-bearer flow (golang.org/x/oauth2/google
//     JWTConfigFromJSON, or the auth library without self-signed JWTs) post
//     the signed assertion to token_uri and get an opaque access token, which
//     the emulator maps back to the email.
//   - /tokeninfo (and /oauth2/v2/tokeninfo) answers like Google's, so code
//     that looks up "who am I" (SPIRE's gcp_kms) works too.
//
// Tokens expire on the wall clock (not the emulator clock) so that moving
// the emulator clock forward by weeks does not invalidate clients' cached
// tokens.

const (
	tokenLifetime = time.Hour
	jwtSkew       = 5 * time.Minute
)

// callerKey keys the authenticated caller in a request context.
type callerKey struct{}

// callerID is the outcome of authenticating one call.
type callerID struct {
	email string
	err   error
}

// serviceAccount is one emulator-issued service account.
type serviceAccount struct {
	Email string `json:"email"`
	KeyID string `json:"key_id"`
	Key   string `json:"key"` // PKCS#8 PEM
	key   *rsa.PrivateKey
}

type issuedToken struct {
	email  string
	scope  string
	expiry time.Time
}

// authority holds principals, service accounts and issued access tokens.
type authority struct {
	mu         sync.Mutex
	principals map[string][]string // nil: no identity checks
	accounts   map[string]*serviceAccount
	tokens     map[string]issuedToken
	tokenURL   string
	clock      *Clock
}

func newAuthority(principals map[string][]string, clock *Clock) *authority {
	a := &authority{accounts: map[string]*serviceAccount{}, tokens: map[string]issuedToken{}, clock: clock}
	if principals != nil {
		a.principals = map[string][]string{}
		for k, v := range principals {
			a.principals[k] = append([]string(nil), v...)
		}
	}
	return a
}

// checking reports whether identity and permission checks are on.
func (a *authority) checking() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.principals != nil
}

// knows reports whether email is a service account of the emulator: one
// it issued a key for, or a principal it was given.
func (a *authority) knows(email string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, issued := a.accounts[email]
	_, principal := a.principals[email]
	return issued || principal
}

func (a *authority) grantsOf(email string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.principals[email]
}

func (a *authority) setPrincipal(email string, perms []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.principals == nil {
		a.principals = map[string][]string{}
	}
	a.principals[email] = append([]string(nil), perms...)
}

// serviceAccountJSON returns the key file for email, creating the account
// if needed (created reports that).
func (a *authority) serviceAccountJSON(email string) (js []byte, created bool, err error) {
	if !strings.Contains(email, "@") {
		return nil, false, fmt.Errorf("%q is not an email address", email)
	}
	a.mu.Lock()
	sa, ok := a.accounts[email]
	a.mu.Unlock()
	if !ok {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, false, fmt.Errorf("generate key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, false, fmt.Errorf("marshal key: %w", err)
		}
		kid := make([]byte, 20)
		rand.Read(kid)
		sa = &serviceAccount{Email: email, KeyID: hex.EncodeToString(kid), key: key,
			Key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}
		a.mu.Lock()
		if existing, ok := a.accounts[email]; ok {
			sa = existing
		} else {
			a.accounts[email] = sa
			created = true
		}
		a.mu.Unlock()
	}
	project := "emulator"
	if _, domain, ok := strings.Cut(email, "@"); ok {
		if p, ok := strings.CutSuffix(domain, ".iam.gserviceaccount.com"); ok {
			project = p
		}
	}
	js, err = json.MarshalIndent(map[string]string{
		"type":                        "service_account",
		"project_id":                  project,
		"private_key_id":              sa.KeyID,
		"private_key":                 sa.Key,
		"client_email":                email,
		"client_id":                   clientID(email),
		"auth_uri":                    strings.TrimSuffix(a.tokenURL, "/token") + "/auth",
		"token_uri":                   a.tokenURL,
		"auth_provider_x509_cert_url": strings.TrimSuffix(a.tokenURL, "/token") + "/certs",
		"universe_domain":             "googleapis.com",
	}, "", "  ")
	return js, created, err
}

// clientID derives a stable numeric client ID from an email.
func clientID(email string) string {
	h := sha256.Sum256([]byte(email))
	return new(big.Int).SetBytes(h[:9]).String()
}

// authenticate maps a bearer token (self-signed JWT or issued access token)
// to an email.
func (a *authority) authenticate(bearer string) (string, error) {
	invalid := status.Error(codes.Unauthenticated, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
	if strings.Count(bearer, ".") == 2 {
		claims, err := a.verifyJWT(bearer)
		if err != nil {
			return "", invalid
		}
		return claims.Iss, nil
	}
	a.mu.Lock()
	t, ok := a.tokens[bearer]
	a.mu.Unlock()
	if !ok || time.Now().After(t.expiry) {
		return "", invalid
	}
	return t.email, nil
}

type jwtClaims struct {
	Iss   string `json:"iss"`
	Sub   string `json:"sub"`
	Aud   string `json:"aud"`
	Scope string `json:"scope"`
	Exp   int64  `json:"exp"`
	Iat   int64  `json:"iat"`
}

// verifyJWT checks an RS256 JWT signed by an emulator-issued service account.
func (a *authority) verifyJWT(tok string) (*jwtClaims, error) {
	parts := strings.Split(tok, ".")
	var hdr struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	var claims jwtClaims
	if err := decodeSegment(parts[0], &hdr); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if err := decodeSegment(parts[1], &claims); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	if hdr.Alg != "RS256" {
		return nil, fmt.Errorf("unsupported alg %q", hdr.Alg)
	}
	a.mu.Lock()
	sa, ok := a.accounts[claims.Iss]
	a.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("unknown issuer %q", claims.Iss)
	}
	if hdr.Kid != "" && hdr.Kid != sa.KeyID {
		return nil, fmt.Errorf("unknown key id %q", hdr.Kid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&sa.key.PublicKey, crypto.SHA256, h[:], sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	now := time.Now()
	if claims.Exp == 0 || now.After(time.Unix(claims.Exp, 0).Add(jwtSkew)) {
		return nil, errors.New("expired")
	}
	if claims.Iat > 0 && time.Unix(claims.Iat, 0).After(now.Add(jwtSkew)) {
		return nil, errors.New("issued in the future")
	}
	if claims.Sub != "" && claims.Sub != claims.Iss {
		return nil, errors.New("sub differs from iss (impersonation is not supported)")
	}
	return &claims, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(seg, "="))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// handler serves the OAuth2 token endpoint and tokeninfo.
func (a *authority) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", a.serveToken)
	mux.HandleFunc("/tokeninfo", a.serveTokenInfo)
	mux.HandleFunc("/oauth2/v2/tokeninfo", a.serveTokenInfo)
	mux.HandleFunc("/oauth2/v3/tokeninfo", a.serveTokenInfo)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (a *authority) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": err.Error()})
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "Invalid grant_type: " + gt})
		return
	}
	claims, err := a.verifyJWT(r.PostForm.Get("assertion"))
	if err != nil || strings.Count(r.PostForm.Get("assertion"), ".") != 2 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
		return
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	tok := "ya29.emulator-" + base64.RawURLEncoding.EncodeToString(raw)
	a.mu.Lock()
	a.tokens[tok] = issuedToken{email: claims.Iss, scope: claims.Scope, expiry: time.Now().Add(tokenLifetime)}
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_in":   int(tokenLifetime.Seconds()) - 1,
		"token_type":   "Bearer",
	})
}

func (a *authority) serveTokenInfo(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	tok := r.Form.Get("access_token")
	if tok == "" {
		tok, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	email, scope, exp := "", "", time.Time{}
	if strings.Count(tok, ".") == 2 {
		if c, err := a.verifyJWT(tok); err == nil {
			email, scope, exp = c.Iss, c.Scope, time.Unix(c.Exp, 0)
		}
	} else {
		a.mu.Lock()
		if t, ok := a.tokens[tok]; ok && time.Now().Before(t.expiry) {
			email, scope, exp = t.email, t.scope, t.expiry
		}
		a.mu.Unlock()
	}
	if email == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_token", "error_description": "Invalid Value"})
		return
	}
	id := clientID(email)
	writeJSON(w, http.StatusOK, map[string]any{
		"issued_to": id, "audience": id, "user_id": id, "scope": scope,
		"expires_in": int(time.Until(exp).Seconds()), "email": email, "verified_email": true, "access_type": "online",
	})
}

// accountsFile is where service accounts persist in DataDir.
const accountsFile = "service-accounts.json"

func (a *authority) saveAccounts(dir string) error {
	if dir == "" {
		return nil
	}
	a.mu.Lock()
	list := make([]*serviceAccount, 0, len(a.accounts))
	for _, sa := range a.accounts {
		list = append(list, sa)
	}
	a.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Email < list[j].Email })
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, accountsFile), b)
}

func (a *authority) loadAccounts(dir string) error {
	if dir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, accountsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var list []*serviceAccount
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("%s: %w", accountsFile, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, sa := range list {
		blk, _ := pem.Decode([]byte(sa.Key))
		if blk == nil {
			return fmt.Errorf("%s: account %s: no PEM key", accountsFile, sa.Email)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		rk, ok := k.(*rsa.PrivateKey)
		if err != nil || !ok {
			return fmt.Errorf("%s: account %s: bad key", accountsFile, sa.Email)
		}
		sa.key = rk
		a.accounts[sa.Email] = sa
	}
	return nil
}
