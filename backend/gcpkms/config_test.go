package gcpkms

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/config"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestParseConfig runs plugin_data through config.Parse, as SPIRE's
// Configure and Validate do.
func TestParseConfig(t *testing.T) {
	const base = "key_ring = \"projects/acme-prod/locations/europe-west1/keyRings/spire\"\nkey_identifier_value = \"server-a\"\n"
	goodPolicy := writeFile(t, "policy.json", `{"bindings":[{"role":"roles/cloudkms.signerVerifier","members":["serviceAccount:spire@acme-prod.iam.gserviceaccount.com"]}],"version":3}`)
	saFile := writeFile(t, "sa.json", `{"type":"service_account","client_email":"spire@acme-prod.iam.gserviceaccount.com"}`)
	notJSON := writeFile(t, "notjson.json", `type = service_account`)
	tests := []struct {
		name    string
		extra   string
		wantErr string
		check   func(*testing.T, *Config)
	}{
		{name: "built-in plugin_data", check: func(t *testing.T, c *Config) {
			if c.protection != kmspb.ProtectionLevel_SOFTWARE || c.scheme != SchemePKCS1 || c.endpoint.address != "" {
				t.Errorf("defaults = %v %v %v", c.protection, c.scheme, c.endpoint)
			}
		}},
		{name: "everything", extra: `
key_protection = "hsm"
rsa_signature_scheme = "pss"
key_labels = { team = "platform", env = "prod" }
endpoint = "private-kms.p.googleapis.com"
key_policy_file = "` + goodPolicy + `"
service_account_file = "` + saFile + `"
`, check: func(t *testing.T, c *Config) {
			if c.protection != kmspb.ProtectionLevel_HSM || c.scheme != SchemePSS || c.KeyLabels["team"] != "platform" || c.KeyLabels["env"] != "prod" {
				t.Errorf("decoded %+v", c)
			}
			if c.endpoint.address != "private-kms.p.googleapis.com:443" || c.endpoint.plaintext {
				t.Errorf("endpoint = %+v", c.endpoint)
			}
			if c.policy == nil || c.policy.GetVersion() != 3 {
				t.Errorf("policy = %v", c.policy)
			}
			if f := c.Fixed(); !strings.Contains(f, "keyRings/spire") || !strings.Contains(f, saFile) {
				t.Errorf("Fixed() = %q", f)
			}
		}},
		{name: "loopback emulator", extra: `endpoint = "127.0.0.1:9010"`, check: func(t *testing.T, c *Config) {
			if !c.endpoint.plaintext {
				t.Errorf("endpoint = %+v, want plaintext", c.endpoint)
			}
		}},
		{name: "missing service account file", extra: `service_account_file = "/nonexistent/sa.json"`, wantErr: "service_account_file /nonexistent/sa.json cannot be read"},
		{name: "service account file not JSON", extra: `service_account_file = "` + notJSON + `"`, wantErr: "is not a JSON credentials file"},
		{name: "empty key ring", extra: "", wantErr: "key_ring is required"},
		{name: "key ring format", wantErr: "not a key ring resource name"},
		{name: "key protection", extra: `key_protection = "HSM"`, wantErr: `key_protection = "HSM"`},
		{name: "scheme", extra: `rsa_signature_scheme = "pkcs1v15"`, wantErr: "rsa_signature_scheme"},
		{name: "reserved label", extra: `key_labels = { spire-owner = "x" }`, wantErr: "reserved prefix"},
		{name: "uppercase label", extra: `key_labels = { Team = "x" }`, wantErr: "must start with a lowercase letter"},
		{name: "label value", extra: `key_labels = { team = "Platform" }`, wantErr: `value of label "team"`},
		{name: "plaintext remote endpoint", extra: `endpoint = "http://kms.example.com:80"`, wantErr: "only a local emulator"},
		{name: "policy file missing", extra: `key_policy_file = "/nonexistent/policy.json"`, wantErr: "cannot be read"},
		{name: "policy file not JSON", extra: `key_policy_file = "` + writeFile(t, "bad.json", "bindings:") + `"`, wantErr: "not an IAM policy in JSON"},
		{name: "policy version", extra: `key_policy_file = "` + writeFile(t, "v1.json", `{"version":1,"bindings":[{"role":"roles/owner","members":["user:a@b.c"]}]}`) + `"`, wantErr: "version 1"},
		{name: "policy member", extra: `key_policy_file = "` + writeFile(t, "m.json", `{"bindings":[{"role":"roles/owner","members":["a@b.c"]}]}`) + `"`, wantErr: `member "a@b.c"`},
		{name: "policy member type case", extra: `key_policy_file = "` + writeFile(t, "case.json", `{"bindings":[{"role":"roles/owner","members":["user:a@b.c","serviceaccount:s@p.iam.gserviceaccount.com"]}]}`) + `"`, wantErr: `"serviceaccount:s@p.iam.gserviceaccount.com", whose type Cloud KMS would refuse: member types are case-sensitive; write serviceAccount:`},
		{name: "unknown key", extra: `key_vault = "x"`, wantErr: "unknown configuration key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := base + tt.extra
			switch tt.name {
			case "empty key ring":
				text = "key_ring = \"\"\nkey_identifier_value = \"server-a\"\n"
			case "key ring format":
				text = "key_ring = \"projects/p/keyRings/r\"\nkey_identifier_value = \"server-a\"\n"
			}
			cfg, err := config.Parse(text, "example.org", []config.Kind{Kind()})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, cfg.Backend.(*Config))
		})
	}
}

// TestServerIDRules checks Cloud KMS's server ID rules (every CryptoKey ID
// must fit 63 characters and Cloud KMS's charset) where the ID is known:
// Parse refuses such a key_identifier_value, so SPIRE's Validate does too,
// naming the key and what would fit; a file's UUID always fits; and Open
// (through New) still refuses an ID that did not come through config.
func TestServerIDRules(t *testing.T) {
	const ring = "key_ring = \"" + testRing + "\"\nendpoint = \"127.0.0.1:1\"\n"
	tests := []struct {
		id      string
		wantErr []string
	}{
		{strings.Repeat("a", 40), nil},
		{"2b3c9a8e-1d4f-4e6a-9b7c-0d1e2f3a4b5c", nil},
		{"server_a-1", nil},
		{strings.Repeat("a", 41), []string{"at most 40 characters", "this one has 41", "choose a shorter one"}},
		{"Server.A", []string{"lowercase letters", `for example "server-a"`}},
		{"server a", []string{"lowercase letters", `for example "server-a"`}},
		{"é", []string{"lowercase letters", "choose one that does"}},
		{"Été-1", []string{"lowercase letters", "choose one that does"}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			_, err := config.Parse(ring+"key_identifier_value = \""+tt.id+"\"\n", "example.org", []config.Kind{Kind()})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted key_identifier_value %q", tt.id)
			}
			for _, want := range append([]string{`key_identifier_value "` + tt.id + `" cannot be used with gcp_kms`}, tt.wantErr...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Parse error %q does not say %q", err, want)
				}
			}
			if s := suggestServerID(tt.id); s != "" && checkServerID(s) != nil {
				t.Errorf("suggested server ID %q is refused itself", s)
			}
			if strings.Contains(tt.id, "é") && strings.Contains(err.Error(), "for example") {
				t.Errorf("Parse error %q suggests an ID for a non-ASCII one", err)
			}
		})
	}

	// key_identifier_file holds a UUID, which always fits: the ID read from
	// it passes the same check.
	path := writeFile(t, "server-id", uuid.NewString()+"\n")
	cfg, err := config.Parse(ring+"key_identifier_file = \""+path+"\"\n", "example.org", []config.Kind{Kind()})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := cfg.ServerID(false); err != nil || id == "" {
		t.Errorf("ServerID from a UUID file = %q, %v", id, err)
	}
	if n := len(uuid.NewString()); n > maxServerIDLen() {
		t.Errorf("a UUID has %d characters, more than the %d a server ID may have", n, maxServerIDLen())
	}

	// A migrate_from block's fixed ID is checked too.
	_, err = config.Parse(ring+"key_identifier_value = \"new\"\nmigrate_from {\n"+ring+"key_identifier_value = \"Old\"\n}\n", "example.org", []config.Kind{Kind()})
	if err == nil || !strings.Contains(err.Error(), `migrate_from: key_identifier_value "Old" cannot be used with gcp_kms`) {
		t.Errorf("migrate_from with an invalid server ID: %v", err)
	}

	// Open, given an ID that did not come through config.
	c := &Config{KeyRing: testRing, Endpoint: "127.0.0.1:1"}
	if err := c.Check("example.org"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{strings.Repeat("a", 41), "Server-A"} {
		_, err := c.Open(context.Background(), config.OpenParams{TrustDomain: "example.org", ServerID: id})
		wantCode(t, err, codes.InvalidArgument, id, "Cloud KMS server ID")
	}
	b, err := c.Open(context.Background(), config.OpenParams{TrustDomain: "example.org", ServerID: strings.Repeat("a", 40)})
	if err != nil {
		t.Fatalf("Open with a 40-character server ID: %v", err)
	}
	b.(*Backend).Close()
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in        string
		address   string
		plaintext bool
		wantErr   string
	}{
		{"", "", false, ""},
		{"cloudkms.googleapis.com", "cloudkms.googleapis.com:443", false, ""},
		{"https://europe-west1-cloudkms.googleapis.com:443/", "europe-west1-cloudkms.googleapis.com:443", false, ""},
		{"127.0.0.1:9010", "127.0.0.1:9010", true, ""},
		{"localhost:9010", "localhost:9010", true, ""},
		{"[::1]:9010", "[::1]:9010", true, ""},
		{"http://127.0.0.1:9010", "127.0.0.1:9010", true, ""},
		{"https://127.0.0.1:9010", "127.0.0.1:9010", false, ""},
		{"127.0.0.1", "", false, "without a port"},
		{"http://10.0.0.1:9010", "", false, "only a local emulator"},
		{"grpc://kms:1", "", false, "scheme"},
		{"kms.example.com/v1", "", false, "not host:port"},
		// Credentials and queries are refused and never repeated
		// (Pa55w0rdXy and Qm9vYmFy must not appear in the error).
		{"https://spire:Pa55w0rdXy@kms.example.com:443", "", false, `endpoint "https://REDACTED@kms.example.com:443" carries credentials`},
		{"spire:Pa55w0rdXy@127.0.0.1:9010", "", false, `endpoint "REDACTED@127.0.0.1:9010" carries credentials`},
		{"https://kms.example.com/?sig=Qm9vYmFy", "", false, `endpoint "https://kms.example.com/?REDACTED"`},
		{"kms.example.com#Qm9vYmFy", "", false, `endpoint "kms.example.com#REDACTED"`},
	}
	for _, tt := range tests {
		ep, err := parseEndpoint(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseEndpoint(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "Pa55w0rdXy") || strings.Contains(err.Error(), "Qm9vYmFy")) {
				t.Errorf("parseEndpoint(%q) error %q repeats a secret", tt.in, err)
			}
			continue
		}
		if err != nil || ep.address != tt.address || ep.plaintext != tt.plaintext {
			t.Errorf("parseEndpoint(%q) = %+v, %v; want %s plaintext=%v", tt.in, ep, err, tt.address, tt.plaintext)
		}
	}
}

func TestLoadCredentials(t *testing.T) {
	sa := writeFile(t, "sa.json", `{"type":"service_account","client_email":"spire@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n"}`)
	wif := writeFile(t, "wif.json", `{"type":"external_account","service_account_impersonation_url":"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/spire@p.iam.gserviceaccount.com:generateAccessToken"}`)
	user := writeFile(t, "user.json", `{"type":"authorized_user","client_id":"x"}`)
	bad := writeFile(t, "bad.json", `{"type":"api_key","private_key":"secret"}`)
	loopback, _ := parseEndpoint("127.0.0.1:9010")
	remote, _ := parseEndpoint("")
	noEnv := func(string) string { return "" }
	tests := []struct {
		name    string
		file    string
		ep      endpoint
		env     func(string) string
		email   string
		lookup  bool
		wantErr string
	}{
		{name: "service account file", file: sa, ep: remote, env: noEnv, email: "spire@p.iam.gserviceaccount.com"},
		{name: "workload identity federation", file: wif, ep: remote, env: noEnv, email: "spire@p.iam.gserviceaccount.com"},
		{name: "user credentials", file: user, ep: remote, env: noEnv},
		{name: "unsupported type", file: bad, ep: remote, env: noEnv, wantErr: `credential type "api_key"`},
		{name: "missing file", file: "/nonexistent.json", ep: remote, env: noEnv, wantErr: "cannot be read"},
		{name: "emulator without credentials", ep: loopback, env: noEnv},
		{name: "ADC file", ep: remote, env: func(string) string { return sa }, email: "spire@p.iam.gserviceaccount.com"},
		{name: "ADC metadata server", ep: remote, env: noEnv, lookup: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadCredentials(tt.file, tt.ep, tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || strings.Contains(err.Error(), "secret") {
					t.Fatalf("error = %v, want %q and no secret", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.email != tt.email || (c.lookup != nil) != tt.lookup {
				t.Errorf("email = %q lookup = %v, want %q %v", c.email, c.lookup != nil, tt.email, tt.lookup)
			}
			if strings.Contains(c.describe, "secret") {
				t.Errorf("describe leaks the file: %q", c.describe)
			}
		})
	}
}
