package keyvault

import (
	"net"
	"net/http"
	"strings"
	"time"
)

// statusRecorder remembers the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// handler serves one TLS listener. fixed is the vault of a dedicated
// listener, nil for the main one (which routes by Host).
func (s *Server) handler(fixed *vault) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.setDate(w)
		rec := &statusRecorder{ResponseWriter: w}
		label := s.route(rec, r, fixed)
		s.logf("%s %s %s -> %d %s (%s)", r.Method, r.Host, r.URL.RequestURI(), rec.status, label, time.Since(start).Round(time.Microsecond))
	})
}

// setDate stamps an answer with the emulator's clock, as Key Vault's
// answers carry the service's time: a client that learns the vault's time
// from the Date header (to judge key ages on the clock that dates them) sees
// the clock a test moved. net/http keeps a Date header the handler sets.
func (s *Server) setDate(w http.ResponseWriter) {
	w.Header().Set("Date", s.clock.Now().UTC().Format(http.TimeFormat))
}

// plainHandler serves the plain-HTTP listener: the managed-identity
// endpoint and the admin API.
func (s *Server) plainHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.setDate(w)
		rec := &statusRecorder{ResponseWriter: w}
		p := strings.ToLower(r.URL.Path)
		label := ""
		switch {
		case p == "/msi/token" || p == "/metadata/identity/oauth2/token":
			label = "ManagedIdentityToken"
			s.serveMSIToken(rec, r)
		case strings.HasPrefix(p, adminPrefix):
			label = "admin"
			s.serveAdmin(rec, r)
		default:
			http.NotFound(rec, r)
		}
		s.logf("%s http://%s%s -> %d %s (%s)", r.Method, r.Host, r.URL.RequestURI(), rec.status, label, time.Since(start).Round(time.Microsecond))
	})
}

// route dispatches a request and returns a label for the log.
func (s *Server) route(w http.ResponseWriter, r *http.Request, fixed *vault) string {
	p := r.URL.Path
	lp := strings.ToLower(p)
	segs := splitPath(p)
	first := ""
	if len(segs) > 0 {
		first = strings.ToLower(segs[0])
	}
	switch {
	case strings.HasPrefix(lp, adminPrefix):
		s.serveAdmin(w, r)
		return "admin"
	case lp == "/msi/token" || lp == "/metadata/identity/oauth2/token":
		s.serveMSIToken(w, r)
		return "ManagedIdentityToken"
	case isDataPlane(first):
		v, err := s.vaultFor(r, fixed)
		if err != nil {
			writeError(w, err)
			return "unknown vault"
		}
		return s.serveData(w, r, v, segs)
	case len(segs) == 4 && strings.EqualFold(segs[1], "v2.0") && strings.EqualFold(segs[2], ".well-known") && strings.EqualFold(segs[3], "openid-configuration"):
		s.serveOpenIDConfig(w, r, segs[0])
		return "OpenIDConfiguration"
	case len(segs) == 4 && strings.EqualFold(segs[1], "oauth2") && strings.EqualFold(segs[2], "v2.0") && strings.EqualFold(segs[3], "token"):
		s.serveToken(w, r, segs[0])
		return "Token"
	case len(segs) == 4 && strings.EqualFold(segs[1], "discovery") && strings.EqualFold(segs[3], "keys"):
		s.serveJWKS(w)
		return "JWKS"
	}
	writeError(w, badParam("The request URI %s is not valid.", p))
	return "unknown path"
}

// isDataPlane reports whether the first path segment belongs to the Key
// Vault data plane (keys; other collections get the service's answer).
func isDataPlane(first string) bool {
	switch first {
	case "keys", "deletedkeys", "rng", "secrets", "deletedsecrets", "certificates", "deletedcertificates", "storage":
		return true
	}
	return false
}

// splitPath splits a URL path into segments. A trailing slash yields a
// final empty segment, which routing treats like "latest version".
func splitPath(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// vaultFor picks the vault a request addresses: the dedicated listener's
// vault, else the first label of <name>.vault.azure.net /
// <name>.managedhsm.azure.net, else (IP address, localhost, --hostname) the
// first vault.
func (s *Server) vaultFor(r *http.Request, fixed *vault) (*vault, *apiError) {
	if fixed != nil {
		return fixed, nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if net.ParseIP(strings.Trim(host, "[]")) != nil || host == "localhost" || !strings.Contains(host, ".") {
		return s.vaults[0], nil
	}
	for _, h := range s.opts.Hostnames {
		if strings.EqualFold(h, host) {
			return s.vaults[0], nil
		}
	}
	label, rest, _ := strings.Cut(host, ".")
	if v := s.byName[label]; v != nil && v.managedHSM == strings.HasPrefix(rest, "managedhsm.") {
		return v, nil
	}
	return nil, errf(http.StatusNotFound, CodeVaultNotFound, "The vault or Managed HSM '%s' does not exist in this emulator (serving %s).", label, strings.Join(s.Vaults(), ", "))
}
