package plugintest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSecretsFromEnv(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("eyJhbGciOiJSUzI1NiJ9.federated.assertion\n"), 0o600)
	saFile := filepath.Join(dir, "sa.json")
	os.WriteFile(saFile, []byte(`{"type":"service_account","private_key_id":"0123456789abcdef","private_key":"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n-----END PRIVATE KEY-----\n"}`), 0o600)
	env := []string{
		"AZURE_CLIENT_SECRET=app-secret-value",
		"AZURE_FEDERATED_TOKEN_FILE=" + tokenFile,
		"GOOGLE_APPLICATION_CREDENTIALS=" + saFile,
		"SSL_CERT_FILE=/etc/ssl/ca.pem",
		"AZURE_CLIENT_ID=not-a-secret-id",
		"MY_TOKEN_PATH=/var/run/token",
	}
	got := SecretsFromEnv(env)
	for _, want := range []string{
		"app-secret-value",
		"eyJhbGciOiJSUzI1NiJ9.federated.assertion",
		"0123456789abcdef",
		"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
		"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("SecretsFromEnv misses %q: %q", want, got)
		}
	}
	for _, not := range []string{"not-a-secret-id", "/etc/ssl/ca.pem", "/var/run/token"} {
		if slices.Contains(got, not) {
			t.Errorf("SecretsFromEnv counts %q as a secret", not)
		}
	}
}

func TestFindSecret(t *testing.T) {
	tests := []struct {
		name    string
		texts   []string
		secrets []string
		leak    bool
	}{
		{name: "none", texts: []string{"Configured plugin"}, secrets: []string{"app-secret-value"}},
		{name: "leaked", texts: []string{"ok", "error: bad secret app-secret-value"}, secrets: []string{"app-secret-value"}, leak: true},
		{name: "too short to tell", texts: []string{"abc"}, secrets: []string{"abc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := findSecret(tt.texts, tt.secrets)
			if (got != "") != tt.leak {
				t.Errorf("findSecret = %q, want a leak: %v", got, tt.leak)
			}
			if got != "" && slices.ContainsFunc(tt.secrets, func(s string) bool { return strings.Contains(got, s) }) {
				t.Errorf("the report repeats the secret: %q", got)
			}
		})
	}
}
