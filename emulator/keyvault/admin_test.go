package keyvault

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	hc := s.HTTPClient()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx(t), method, s.URL()+"_emulator/"+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := do("GET", "", ""); code != 200 || !strings.Contains(body, s.TenantID()) {
		t.Fatalf("info: %d %s", code, body)
	}
	if code, body := do("GET", "ca.pem", ""); code != 200 || body != string(s.CAPEM()) {
		t.Errorf("ca.pem: %d", code)
	}
	if code, body := do("POST", "faults", `{"op":"GetKey","status":503,"count":1}`); code != 200 || !strings.Contains(body, `"status":503`) {
		t.Errorf("add fault: %d %s", code, body)
	}
	c := newClientWith(t, s, "", secretCredential(t, s, s.ClientID(), s.ClientSecret()), func(o *azkeys.ClientOptions) {
		o.Retry = policy.RetryOptions{MaxRetries: -1}
	})
	_, err := c.GetKey(ctx(t), "x", "", nil)
	wantRespErr(t, err, http.StatusServiceUnavailable, CodeServiceUnavailable)

	code, body := do("GET", "counts", "")
	var counts struct {
		Total  map[string]int
		Vaults map[string]map[string]int
	}
	if err := json.Unmarshal([]byte(body), &counts); code != 200 || err != nil || counts.Total["GetKey"] != 1 || counts.Vaults[DefaultVaultName]["GetKey"] != 1 {
		t.Errorf("counts: %d %s", code, body)
	}
	if code, _ := do("DELETE", "counts", ""); code != http.StatusNoContent || len(s.Counts()) != 0 {
		t.Errorf("reset counts: %d %v", code, s.Counts())
	}
	before := s.Clock().Now()
	if code, body := do("POST", "clock", `{"advance":"240h"}`); code != 200 || s.Clock().Now().Sub(before) < 240*time.Hour {
		t.Errorf("advance clock: %d %s", code, body)
	}
	if code, _ := do("POST", "clock", `{"reset":true}`); code != 200 || s.Clock().Now().Sub(before) > time.Hour {
		t.Errorf("reset clock: %d", code)
	}
	if code, _ := do("POST", "throttling", `{"on":true}`); code != 200 || !s.throttleOn.Load() {
		t.Errorf("throttling on: %d", code)
	}
	if code, _ := do("POST", "faults", `{"op":"Sign","latency":"1s"}`); code != 200 {
		t.Errorf("latency fault: %d", code)
	}
	if code, _ := do("DELETE", "faults", ""); code != http.StatusNoContent || len(s.Faults()) != 0 {
		t.Errorf("clear faults: %d", code)
	}
	if code, _ := do("GET", "nope", ""); code != http.StatusNotFound {
		t.Errorf("unknown admin path: %d", code)
	}
	// The plain-HTTP port serves the admin API too.
	resp, err := http.Get(strings.TrimSuffix(s.MSIURL(), "msi/token") + "_emulator/env")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "AZURE_CLIENT_SECRET="+s.ClientSecret()) {
		t.Errorf("env over plain HTTP: %s", b)
	}
}

func TestStopsWhenContextCancelled(t *testing.T) {
	t.Parallel()
	cx, cancel := context.WithCancel(t.Context())
	s, err := Start(cx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := s.HTTPClient().Get(s.URL() + "_emulator/"); err != nil {
			return // listener closed
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server still serving after its context was cancelled")
}
