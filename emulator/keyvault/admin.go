package keyvault

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// adminPrefix is the path prefix of the admin API. It is served on the main
// TLS port and on the plain-HTTP managed-identity port, to loopback clients
// only, without authentication:
//
//	GET    /_emulator/              info: vaults and URLs, tenant, client IDs
//	GET    /_emulator/ca.pem        the CA certificate
//	GET    /_emulator/env           the env file lines (text/plain)
//	GET    /_emulator/faults        active faults (JSON array of Fault)
//	POST   /_emulator/faults        add a Fault, e.g. {"op":"Sign","status":429,"retryAfter":"1s","count":2}
//	DELETE /_emulator/faults        clear faults
//	GET    /_emulator/clock         {"now":"RFC 3339"}
//	POST   /_emulator/clock         {"advance":"72h"} or {"set":"2030-01-01T00:00:00Z"} or {"reset":true}
//	GET    /_emulator/counts        {"total":{op:n},"vaults":{vault:{op:n}}}
//	DELETE /_emulator/counts        reset counters
//	GET    /_emulator/throttling    {"on":bool}
//	POST   /_emulator/throttling    {"on":true}
const adminPrefix = "/_emulator/"

type adminInfo struct {
	URL                     string            `json:"url"`
	AuthorityHost           string            `json:"authorityHost"`
	TenantID                string            `json:"tenantId"`
	ClientID                string            `json:"clientId"`
	ManagedIdentityClientID string            `json:"managedIdentityClientId"`
	IdentityEndpoint        string            `json:"identityEndpoint"`
	Vaults                  map[string]string `json:"vaults"`
	ManagedHSMs             map[string]string `json:"managedHsms"`
	Now                     time.Time         `json:"now"`
	Throttling              bool              `json:"throttling"`
}

func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "the admin API answers loopback clients only"})
		return
	}
	what := strings.Trim(strings.TrimPrefix(strings.ToLower(r.URL.Path), adminPrefix), "/")
	bad := func(err error) { writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()}) }
	switch what + " " + r.Method {
	case " GET":
		info := adminInfo{
			URL: s.mainURL, AuthorityHost: s.AuthorityHost(), TenantID: s.TenantID(), ClientID: s.ClientID(),
			ManagedIdentityClientID: s.ManagedIdentityClientID(), IdentityEndpoint: s.MSIURL(),
			Vaults: map[string]string{}, ManagedHSMs: map[string]string{}, Now: s.clock.Now(), Throttling: s.throttleOn.Load(),
		}
		for _, v := range s.vaults {
			if v.managedHSM {
				info.ManagedHSMs[v.name] = s.VaultURL(v.name)
			} else {
				info.Vaults[v.name] = s.VaultURL(v.name)
			}
		}
		writeJSON(w, http.StatusOK, info)
	case "ca.pem GET":
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.CAPEM())
	case "env GET":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, strings.Join(s.Env(), "\n"))
	case "faults GET":
		writeJSON(w, http.StatusOK, s.Faults())
	case "faults POST":
		var f Fault
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			bad(fmt.Errorf("fault: %w", err))
			return
		}
		s.InjectFault(f)
		writeJSON(w, http.StatusOK, s.Faults())
	case "faults DELETE":
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case "clock GET":
		writeJSON(w, http.StatusOK, map[string]time.Time{"now": s.clock.Now()})
	case "clock POST":
		var req struct {
			Advance Duration   `json:"advance"`
			Set     *time.Time `json:"set"`
			Reset   bool       `json:"reset"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			bad(fmt.Errorf("clock: %w", err))
			return
		}
		switch {
		case req.Reset:
			s.clock.Reset()
		case req.Set != nil:
			s.clock.Set(*req.Set)
		default:
			s.clock.Advance(time.Duration(req.Advance))
		}
		writeJSON(w, http.StatusOK, map[string]time.Time{"now": s.clock.Now()})
	case "counts GET":
		out := map[string]any{"total": s.Counts()}
		per := map[string]map[string]int{}
		for _, v := range s.vaults {
			per[v.name] = s.VaultCounts(v.name)
		}
		out["vaults"] = per
		writeJSON(w, http.StatusOK, out)
	case "counts DELETE":
		s.ResetCounts()
		w.WriteHeader(http.StatusNoContent)
	case "throttling GET":
		writeJSON(w, http.StatusOK, map[string]bool{"on": s.throttleOn.Load()})
	case "throttling POST":
		var req struct {
			On bool `json:"on"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			bad(fmt.Errorf("throttling: %w", err))
			return
		}
		s.SetThrottling(req.On)
		writeJSON(w, http.StatusOK, map[string]bool{"on": req.On})
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown admin endpoint " + r.Method + " " + r.URL.Path})
	}
}
