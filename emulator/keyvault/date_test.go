package keyvault

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"
)

// TestDateHeaderFollowsClock checks that every answer, on either listener
// and over HTTP/1.1 and HTTP/2, carries the emulator's clock in its Date
// header, successes and errors alike: a client that learns the vault's time
// from it sees the clock a test moved, not the host's.
func TestDateHeaderFollowsClock(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	s.Clock().Advance(48 * time.Hour)
	tok, err := s.IssueToken(s.ClientID(), ResourceVault, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const q = "?api-version=2025-07-01"
	for _, proto := range []struct {
		name  string
		major int
	}{{"HTTP/1.1", 1}, {"HTTP/2", 2}} {
		http2 := proto.major == 2
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: http2}
		if !http2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		t.Cleanup(tr.CloseIdleConnections)
		for _, tt := range []struct {
			name, url string
			auth      bool
			status    int
		}{
			{"list keys", s.URL() + "keys" + q, true, http.StatusOK},
			{"missing key", s.URL() + "keys/absent" + q, true, http.StatusNotFound},
			{"authentication challenge", s.URL() + "keys" + q, false, http.StatusUnauthorized},
			{"unknown path", s.URL() + "nothing/here" + q, true, http.StatusBadRequest},
			{"managed identity endpoint", s.MSIURL(), false, 0},
		} {
			t.Run(proto.name+"/"+tt.name, func(t *testing.T) {
				req, err := http.NewRequestWithContext(ctx(t), http.MethodGet, tt.url, nil)
				if err != nil {
					t.Fatal(err)
				}
				if tt.auth {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if tt.status != 0 && resp.StatusCode != tt.status {
					t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
				}
				if resp.Request.URL.Scheme == "https" && resp.ProtoMajor != proto.major {
					t.Errorf("answered over %s, want %s", resp.Proto, proto.name)
				}
				date, err := http.ParseTime(resp.Header.Get("Date"))
				if err != nil {
					t.Fatalf("Date header %q: %v", resp.Header.Get("Date"), err)
				}
				if d := s.Clock().Now().Sub(date); d < 0 || d > 2*time.Second {
					t.Errorf("Date %v is %v behind the emulator's clock %v", date, d, s.Clock().Now())
				}
			})
		}
	}
}
