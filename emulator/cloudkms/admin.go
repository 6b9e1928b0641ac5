package cloudkms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AdminHandler serves the emulator's control API over HTTP, so that a test
// in another process (for example one driving the plugin binary) can inject
// faults, move the clock and read counters. `kmskeeper emulator gcp
// --admin-listen` serves it on loopback. Every answer is JSON:
//
//	GET    /v1/counts              {"AsymmetricSign": 3, ...}
//	DELETE /v1/counts              reset counters and the request log
//	GET    /v1/requests            the latest requests: [{"method":"AsymmetricSign","resource":"projects/...","received":"2026-...Z","code":"RESOURCE_EXHAUSTED","injected":true}, ...]
//	GET    /v1/faults              active faults
//	POST   /v1/faults              add a fault: {"method":"AsymmetricSign","code":"UNAVAILABLE","times":2,"latency":"100ms","tamper":"signature_crc32c"}
//	                               or a throttle advising a delay: {"method":"AsymmetricSign","code":"RESOURCE_EXHAUSTED","retry_delay":"1.5s"}
//	DELETE /v1/faults              clear faults
//	GET    /v1/clock               {"now":"2026-...Z"}
//	POST   /v1/clock/advance       {"duration":"720h"}
//	POST   /v1/quotas              {"enabled":true,"write_per_minute":60,...}; optional "model" ("regional" or "per-minute") and "overloaded" (bool)
//	POST   /v1/principals          {"email":"sa@p.iam.gserviceaccount.com","permissions":["roles/cloudkms.admin"]}
//	POST   /v1/service-accounts    {"email":"..."} -> the service account JSON key file
//	POST   /v1/projects/{project}/service  {"enabled":false}: the Cloud KMS API disabled in a project (SERVICE_DISABLED)
//	GET    /v1/healthz             {"endpoint":"127.0.0.1:port", ...}
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/counts", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Counts()) })
	mux.HandleFunc("DELETE /v1/counts", func(w http.ResponseWriter, r *http.Request) {
		s.ResetCounts()
		writeJSON(w, http.StatusOK, map[string]any{})
	})
	mux.HandleFunc("GET /v1/requests", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Requests()) })
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Faults()) })
	mux.HandleFunc("POST /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		if !readJSON(w, r, &f) {
			return
		}
		s.InjectFault(f)
		writeJSON(w, http.StatusOK, s.Faults())
	})
	mux.HandleFunc("DELETE /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		writeJSON(w, http.StatusOK, []Fault{})
	})
	clock := func(w http.ResponseWriter) {
		writeJSON(w, http.StatusOK, map[string]string{"now": s.clock.Now().Format(time.RFC3339Nano)})
	}
	mux.HandleFunc("GET /v1/clock", func(w http.ResponseWriter, r *http.Request) { clock(w) })
	mux.HandleFunc("POST /v1/clock/advance", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Duration string `json:"duration"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		d, err := time.ParseDuration(req.Duration)
		if err != nil || d < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("invalid duration %q", req.Duration)})
			return
		}
		s.clock.Advance(d)
		clock(w)
	})
	mux.HandleFunc("POST /v1/quotas", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Enabled    bool   `json:"enabled"`
			Model      string `json:"model"`
			Overloaded *bool  `json:"overloaded"`
			QuotaLimits
		}
		if !readJSON(w, r, &req) {
			return
		}
		model, err := ParseQuotaModel(req.Model)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if model != "" {
			s.SetQuotaModel(model)
		}
		if req.Overloaded != nil {
			s.SetQuotaOverloaded(*req.Overloaded)
		}
		s.SetQuotaLimits(req.QuotaLimits)
		s.SetQuotas(req.Enabled)
		writeJSON(w, http.StatusOK, map[string]any{"enabled": req.Enabled})
	})
	mux.HandleFunc("POST /v1/principals", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Email       string   `json:"email"`
			Permissions []string `json:"permissions"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		s.SetPrincipal(req.Email, req.Permissions...)
		writeJSON(w, http.StatusOK, map[string]any{})
	})
	mux.HandleFunc("POST /v1/service-accounts", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Email string `json:"email"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		js, err := s.ServiceAccountJSON(req.Email)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(js)
	})
	mux.HandleFunc("POST /v1/projects/{project}/service", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Enabled bool `json:"enabled"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		s.SetServiceEnabled(r.PathValue("project"), req.Enabled)
		writeJSON(w, http.StatusOK, map[string]any{"project": r.PathValue("project"), "enabled": req.Enabled})
	})
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"endpoint": s.Addr(), "tls": s.ca != nil, "token_uri": s.TokenURL()})
	})
	return mux
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON body: " + err.Error()})
		return false
	}
	return true
}

// AdminClient drives an emulator's AdminHandler from another process.
type AdminClient struct {
	// BaseURL is the admin listener, e.g. "http://127.0.0.1:9011".
	BaseURL string
	// HTTPClient defaults to http.DefaultClient.
	HTTPClient *http.Client
}

func (c *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("gcpkms admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gcpkms admin %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// InjectFault adds a fault (see Server.InjectFault).
func (c *AdminClient) InjectFault(ctx context.Context, f Fault) error {
	return c.do(ctx, http.MethodPost, "/v1/faults", f, nil)
}

// ClearFaults removes every fault.
func (c *AdminClient) ClearFaults(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/v1/faults", nil, nil)
}

// Advance moves the emulator clock forward and returns its new time.
func (c *AdminClient) Advance(ctx context.Context, d time.Duration) (time.Time, error) {
	var out struct {
		Now time.Time `json:"now"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/clock/advance", map[string]string{"duration": d.String()}, &out)
	return out.Now, err
}

// Now returns the emulator clock's time.
func (c *AdminClient) Now(ctx context.Context) (time.Time, error) {
	var out struct {
		Now time.Time `json:"now"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/clock", nil, &out)
	return out.Now, err
}

// Counts returns the request counters.
func (c *AdminClient) Counts(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := c.do(ctx, http.MethodGet, "/v1/counts", nil, &out)
	return out, err
}

// Requests returns the latest requests the emulator received (see
// Server.Requests; Received has no monotonic reading across processes).
func (c *AdminClient) Requests(ctx context.Context) ([]Request, error) {
	var out []Request
	err := c.do(ctx, http.MethodGet, "/v1/requests", nil, &out)
	return out, err
}

// ResetCounts zeroes the request counters and empties the request log.
func (c *AdminClient) ResetCounts(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/v1/counts", nil, nil)
}

// SetQuotas turns quotas on or off with limits (zero fields: published).
func (c *AdminClient) SetQuotas(ctx context.Context, on bool, limits QuotaLimits) error {
	return c.do(ctx, http.MethodPost, "/v1/quotas", struct {
		Enabled bool `json:"enabled"`
		QuotaLimits
	}{on, limits}, nil)
}

// SetServiceEnabled enables or disables the Cloud KMS API in project (see
// Server.SetServiceEnabled).
func (c *AdminClient) SetServiceEnabled(ctx context.Context, project string, enabled bool) error {
	return c.do(ctx, http.MethodPost, "/v1/projects/"+url.PathEscape(project)+"/service", map[string]bool{"enabled": enabled}, nil)
}

// SetQuotaModel turns quotas on or off under model, with limits (zero
// fields: published) and, for the regional model, whether the service is
// overloaded, so that requests over their limit are refused (see
// Server.SetQuotaModel and Server.SetQuotaOverloaded).
func (c *AdminClient) SetQuotaModel(ctx context.Context, on bool, model QuotaModel, overloaded bool, limits QuotaLimits) error {
	return c.do(ctx, http.MethodPost, "/v1/quotas", struct {
		Enabled    bool       `json:"enabled"`
		Model      QuotaModel `json:"model"`
		Overloaded bool       `json:"overloaded"`
		QuotaLimits
	}{on, model, overloaded, limits}, nil)
}
