package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/internal/syncbuf"
)

// TestEmulatorAzureWritesCAAndEnvFiles runs `kmskeeper emulator azure` with
// --ca-file / --env-file in their several forms and checks what a client
// gets from the two files: the CA PEM that verifies the served certificate
// (for --hostname too), and an env file, mode 0600 because it holds the
// client secret, whose SSL_CERT_FILE is the absolute path of that CA file
// and whose AZURE_* and IDENTITY_* values obtain tokens.
func TestEmulatorAzureWritesCAAndEnvFiles(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the extra arguments and where the files must appear.
		setup func(t *testing.T, dir string) (args []string, caFile, envFile string)
		// tenant and secret the env file must carry ("" = default / any).
		tenant, secret string
	}{
		{
			name: "both files named, in different directories",
			setup: func(t *testing.T, dir string) ([]string, string, string) {
				ca, env := filepath.Join(dir, "emulator-ca.pem"), filepath.Join(dir, "env", "client.env")
				mkdir(t, filepath.Dir(env))
				return []string{"--ca-file", ca, "--env-file", env, "--tenant-id", "11111111-2222-3333-4444-555555555555", "--client-secret", "s3cret-for-ci"}, ca, env
			},
			tenant: "11111111-2222-3333-4444-555555555555", secret: "s3cret-for-ci",
		},
		{
			name: "env file defaults to azure.env next to the CA file",
			setup: func(t *testing.T, dir string) ([]string, string, string) {
				ca := filepath.Join(dir, "tls", "ca.pem")
				mkdir(t, filepath.Dir(ca))
				return []string{"--ca-file", ca}, ca, filepath.Join(dir, "tls", "azure.env")
			},
		},
		{
			name: "relative paths become an absolute SSL_CERT_FILE",
			setup: func(t *testing.T, dir string) ([]string, string, string) {
				t.Chdir(dir)
				wd, err := os.Getwd()
				if err != nil {
					t.Fatal(err)
				}
				return []string{"--ca-file", "rel-ca.pem", "--env-file", "rel.env"}, filepath.Join(wd, "rel-ca.pem"), filepath.Join(wd, "rel.env")
			},
		},
		{
			name: "a world-readable env file is replaced by a 0600 one",
			setup: func(t *testing.T, dir string) ([]string, string, string) {
				ca, env := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "azure.env")
				if err := os.WriteFile(env, []byte("AZURE_CLIENT_SECRET=stale\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{"--ca-file", ca, "--env-file", env}, ca, env
			},
		},
		{
			name: "both default into --data-dir",
			setup: func(t *testing.T, dir string) ([]string, string, string) {
				data := filepath.Join(dir, "data")
				return []string{"--data-dir", data}, filepath.Join(data, "ca.pem"), filepath.Join(data, "azure.env")
			},
		},
	}
	const hostname = "kv.ci.internal"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			extra, caFile, envFile := tt.setup(t, dir)
			args := append([]string{"--listen", "127.0.0.1:0", "--hostname", hostname}, extra...)
			mainURL, banner := runAzureEmulatorUntilReady(t, args)

			// The CA file: one CA certificate in PEM.
			caPEM, err := os.ReadFile(caFile)
			if err != nil {
				t.Fatalf("CA file: %v\n%s", err, banner)
			}
			block, rest := pem.Decode(caPEM)
			if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("CA file is not a single PEM certificate:\n%s", caPEM)
			}
			caCert, err := x509.ParseCertificate(block.Bytes)
			if err != nil || !caCert.IsCA {
				t.Fatalf("CA file certificate: IsCA %v, %v", caCert != nil && caCert.IsCA, err)
			}

			// The env file: 0600, every line a client needs.
			info, err := os.Stat(envFile)
			if err != nil {
				t.Fatalf("env file: %v\n%s", err, banner)
			}
			if perm := info.Mode().Perm(); perm != 0o600 {
				t.Errorf("env file mode %v, want 0600 (it holds the client secret)", perm)
			}
			env := readEnvFile(t, envFile)
			for _, k := range []string{"SSL_CERT_FILE", "AZURE_AUTHORITY_HOST", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"} {
				if env[k] == "" {
					t.Errorf("env file lacks %s:\n%v", k, env)
				}
			}
			if got := env["SSL_CERT_FILE"]; !filepath.IsAbs(got) || got != caFile {
				t.Errorf("SSL_CERT_FILE = %q, want the absolute CA file path %q", got, caFile)
			}
			if pointed, err := os.ReadFile(env["SSL_CERT_FILE"]); err != nil || !bytes.Equal(pointed, caPEM) {
				t.Errorf("SSL_CERT_FILE does not hold the CA (%v)", err)
			}
			if env["AZURE_AUTHORITY_HOST"] != mainURL {
				t.Errorf("AZURE_AUTHORITY_HOST = %q, want %q", env["AZURE_AUTHORITY_HOST"], mainURL)
			}
			wantTenant := tt.tenant
			if wantTenant == "" {
				wantTenant = keyvault.DefaultTenantID
			}
			if env["AZURE_TENANT_ID"] != wantTenant || env["AZURE_CLIENT_ID"] != keyvault.DefaultClientID {
				t.Errorf("tenant/client = %q/%q", env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"])
			}
			if tt.secret != "" && env["AZURE_CLIENT_SECRET"] != tt.secret {
				t.Errorf("AZURE_CLIENT_SECRET = %q, want %q", env["AZURE_CLIENT_SECRET"], tt.secret)
			}
			if strings.Contains(env["AZURE_CLIENT_SECRET"], "stale") {
				t.Error("the old env file's content survived")
			}
			if u, err := url.Parse(env["IDENTITY_ENDPOINT"]); err != nil || u.Scheme != "http" || u.Path != "/msi/token" {
				t.Errorf("IDENTITY_ENDPOINT = %q", env["IDENTITY_ENDPOINT"])
			}
			for _, f := range []string{caFile, envFile} { // as given, maybe relative
				if !strings.Contains(banner, filepath.Base(f)) {
					t.Errorf("banner does not name %s:\n%s", f, banner)
				}
			}

			// The CA file verifies the served certificate, for --hostname too.
			roots := x509.NewCertPool()
			roots.AddCert(caCert)
			addr := strings.TrimSuffix(strings.TrimPrefix(mainURL, "https://"), "/")
			for _, name := range []string{hostname, "127.0.0.1", "localhost", "kmskeeper.vault.azure.net"} {
				conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12})
				if err != nil {
					t.Errorf("TLS with the CA file for %q: %v", name, err)
					continue
				}
				conn.Close()
			}

			// The credentials in the env file obtain tokens.
			hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
			cred, err := azidentity.NewClientSecretCredential(env["AZURE_TENANT_ID"], env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"], &azidentity.ClientSecretCredentialOptions{
				ClientOptions: azcore.ClientOptions{
					Transport: hc, Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: env["AZURE_AUTHORITY_HOST"]},
					Retry: policy.RetryOptions{MaxRetries: -1},
				},
				DisableInstanceDiscovery: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			cx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if _, err := cred.GetToken(cx, policy.TokenRequestOptions{Scopes: []string{keyvault.ResourceVault + "/.default"}}); err != nil {
				t.Errorf("client secret from the env file: %v", err)
			}
			req, _ := http.NewRequestWithContext(cx, http.MethodGet, env["IDENTITY_ENDPOINT"]+"?api-version=2019-08-01&resource="+url.QueryEscape(keyvault.ResourceVault), nil)
			req.Header.Set("X-IDENTITY-HEADER", env["IDENTITY_HEADER"])
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("IDENTITY_ENDPOINT: %v", err)
			}
			defer resp.Body.Close()
			var tok struct {
				AccessToken string `json:"access_token"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
				t.Errorf("managed identity token with IDENTITY_HEADER: %d, %v", resp.StatusCode, err)
			}
		})
	}
}

// runAzureEmulatorUntilReady runs `emulator azure` with args until its banner
// says Ready, stops it when the test ends, and returns the main URL and the
// banner.
func runAzureEmulatorUntilReady(t *testing.T, args []string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var out syncbuf.Buffer
	var stderr syncbuf.Buffer
	done := make(chan error, 1)
	go func() { done <- runEmulatorAzure(ctx, args, &out, &stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("emulator azure: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("emulator azure did not stop after cancel")
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "Ready.") {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("emulator azure ended early: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("emulator azure not ready:\n%s\n%s", out.String(), stderr.String())
		}
	}
	banner := out.String()
	m := regexp.MustCompile(`listening on (https://\S+/)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner has no URL:\n%s", banner)
	}
	return m[1], banner
}

// readEnvFile parses KEY=value lines, skipping comments and blank lines.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("env file line without '=': %q", line)
			continue
		}
		if _, dup := env[k]; dup {
			t.Errorf("env file sets %s twice", k)
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
