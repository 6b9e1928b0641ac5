package azurekv

import (
	"maps"
	"strings"
	"testing"

	"github.com/kmskeeper/kmskeeper/config"
)

// TestParse checks plugin_data through config.Parse, as Configure and
// Validate run it: the built-in plugin's keys in both generations of its
// docs, and kmskeeper's own.
func TestParse(t *testing.T) {
	kinds := []config.Kind{Kind()}
	many := "key_tags = {\n"
	for i := range 13 {
		many += "  t" + string(rune('a'+i)) + " = \"v\"\n"
	}
	many += "}\n"
	tests := []struct {
		name, hcl string
		wantErr   string // "" means valid
		warn      string
		check     func(t *testing.T, c *Config)
	}{
		{name: "built-in, client secret", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_file = "/tmp/id"
tenant_id = "t"
subscription_id = "s"
app_id = "a"
app_secret = "shh"`, check: func(t *testing.T, c *Config) {
			if c.KeyProtection != "software" || c.vault.kind != kindVault || c.vault.cloudName != "AzurePublic" {
				t.Errorf("got %+v", c)
			}
			if strings.Contains(c.Fixed(), "shh") {
				t.Errorf("Fixed() reveals the secret: %s", c.Fixed())
			}
		}},
		{name: "older built-in, use_msi and key_metadata_file", hcl: `key_vault_uri = "https://v.vault.azure.net"
key_metadata_file = "/tmp/id"
use_msi = true`, warn: "use_msi is deprecated"},
		{name: "default chain", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "server-1"`},
		{name: "managed HSM means hsm", hcl: `key_vault_uri = "https://h.managedhsm.azure.net/"
key_identifier_value = "s"`, check: func(t *testing.T, c *Config) {
			if c.KeyProtection != "hsm" || c.vault.kind != kindManagedHSM {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "us government", hcl: `key_vault_uri = "https://v.vault.usgovcloudapi.net/"
key_identifier_value = "s"
key_protection = "HSM"`, check: func(t *testing.T, c *Config) {
			if c.vault.cloudName != "AzureGovernment" || c.KeyProtection != "hsm" {
				t.Errorf("got %+v", c)
			}
			// The credential and the client both go to the government cloud.
			if h := authorityHost(c.clientOptions(network{})); h != "https://login.microsoftonline.us/" {
				t.Errorf("authority = %s, want the government cloud's", h)
			}
		}},
		{name: "china managed HSM", hcl: `key_vault_uri = "https://h.managedhsm.azure.cn/"
key_identifier_value = "s"`, check: func(t *testing.T, c *Config) {
			if c.vault.cloudName != "AzureChina" || c.vault.kind != kindManagedHSM {
				t.Errorf("got %+v", c)
			}
			if h := authorityHost(c.clientOptions(network{})); h != "https://login.chinacloudapi.cn/" {
				t.Errorf("authority = %s, want the China cloud's", h)
			}
		}},
		{name: "loopback emulator", hcl: `key_vault_uri = "https://127.0.0.1:8443/"
key_identifier_value = "s"`, check: func(t *testing.T, c *Config) {
			if !c.vault.loopback || c.vault.kind != kindUnknown {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "key tags", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
key_tags = { owner = "platform", "cost center" = "42" }
purge_deleted_keys = true`, check: func(t *testing.T, c *Config) {
			if c.KeyTags["cost center"] != "42" || !c.PurgeDeletedKeys {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "missing uri", hcl: `key_identifier_value = "s"`, wantErr: "plugin_data names no backend"},
		{name: "http", hcl: `key_vault_uri = "http://v.vault.azure.net/"
key_identifier_value = "s"`, wantErr: "must start with https://"},
		{name: "http loopback", hcl: `key_vault_uri = "http://127.0.0.1:8080/"
key_identifier_value = "s"`, wantErr: "must start with https://"},
		{name: "path", hcl: `key_vault_uri = "https://v.vault.azure.net/keys"
key_identifier_value = "s"`, wantErr: "no path"},
		{name: "partial secret", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
tenant_id = "t"
app_id = "a"`, wantErr: "go together"},
		{name: "bad tenant", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
tenant_id = "bad tenant"
app_id = "a"
app_secret = "shh"`, wantErr: `tenant_id "bad tenant" is not a tenant ID`},
		{name: "tenant domain", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
tenant_id = "contoso.onmicrosoft.com"
app_id = "a"
app_secret = "shh"`},
		{name: "msi and secret", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
tenant_id = "t"
app_id = "a"
app_secret = "x"
use_msi = true`, wantErr: "keep only one"},
		{name: "bad protection", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
key_protection = "tpm"`, wantErr: "is not valid"},
		{name: "software on managed HSM", hcl: `key_vault_uri = "https://h.managedhsm.azure.net/"
key_identifier_value = "s"
key_protection = "software"`, wantErr: "not possible on a Managed HSM"},
		{name: "reserved spire tag", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
key_tags = { spire-server-id = "x" }`, wantErr: "reserved prefix"},
		{name: "reserved azure tag", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
key_tags = { "Azure:x" = "x" }`, wantErr: "reserved prefix"},
		{name: "too many tags", hcl: "key_vault_uri = \"https://v.vault.azure.net/\"\nkey_identifier_value = \"s\"\n" + many, wantErr: "at most 11 are allowed"},
		{name: "long tag value", hcl: "key_vault_uri = \"https://v.vault.azure.net/\"\nkey_identifier_value = \"s\"\nkey_tags = { a = \"" + strings.Repeat("x", 257) + "\" }", wantErr: "at most 256"},
		{name: "unknown key", hcl: `key_vault_uri = "https://v.vault.azure.net/"
key_identifier_value = "s"
key_vaut_uri = "x"`, wantErr: "unknown configuration key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(tt.hcl, testTD, kinds)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.warn != "" && !strings.Contains(strings.Join(cfg.Warnings, "\n"), tt.warn) {
				t.Errorf("warnings %q, want one containing %q", cfg.Warnings, tt.warn)
			}
			if tt.check != nil {
				tt.check(t, cfg.Backend.(*Config))
			}
		})
	}
}

// TestConfigErrorsHideSecrets checks that no error about plugin_data repeats
// a secret it carries: an unquoted app_secret (a template that lost its
// quotes) came back whole in HCL's message, and a key_vault_uri with
// user:password@ or a SAS token's ?sig= came back verbatim in its own
// (issue 15, defect 9). The error still names the key and, for HCL, the line.
func TestConfigErrorsHideSecrets(t *testing.T) {
	const head = "key_vault_uri = \"https://v.vault.azure.net/\"\nkey_identifier_value = \"s\"\ntenant_id = \"t\"\napp_id = \"a\"\n"
	const uriTail = "\nkey_identifier_value = \"s\"\n"
	tests := []struct {
		name, hcl string
		secrets   []string
		want      []string
	}{
		{"unquoted app_secret", head + "app_secret = abc$def/ghi\n", []string{"abc$def/ghi", "abc"},
			[]string{"line 5", "(key app_secret)", "double quotes"}},
		{"unquoted app_secret with a space", head + "app_secret = Hq7~Ws2 Kd9.Lp4\n", []string{"Hq7", "Ws2", "Kd9", "Lp4"},
			[]string{"line 5", "app_secret"}},
		{"unquoted app_secret starting with digits", head + "app_secret = 8Kx2Rm5Vn\n", []string{"Kx2Rm5Vn", "8Kx2"},
			[]string{"line 5", "app_secret"}},
		{"user and password", `key_vault_uri = "https://spire:Pa55w0rdXy@v.vault.azure.net/"` + uriTail, []string{"spire:", "Pa55w0rdXy"},
			[]string{"key_vault_uri", `"https://REDACTED@v.vault.azure.net/"`, "not allowed"}},
		{"password only", `key_vault_uri = "https://:Pa55w0rdXy@v.vault.azure.net"` + uriTail, []string{"Pa55w0rdXy"},
			[]string{"key_vault_uri", "REDACTED", "credentials"}},
		{"SAS token", `key_vault_uri = "https://v.vault.azure.net/?sv=2024-01-01&sig=Qm9vYmFy%2Bc2VjcmV0"` + uriTail, []string{"sig=", "Qm9vYmFy", "sv=2024"},
			[]string{"key_vault_uri", `"https://v.vault.azure.net/?REDACTED"`, "a query"}},
		{"fragment", `key_vault_uri = "https://v.vault.azure.net/#tok=Zx8Cv7Bn"` + uriTail, []string{"Zx8Cv7Bn"},
			[]string{"key_vault_uri", "#REDACTED"}},
		{"credentials in a URL that does not parse", `key_vault_uri = "https://spire:Pa55%zzw0rd@v.vault.azure.net/"` + uriTail, []string{"Pa55", "w0rd", "%zz"},
			[]string{"key_vault_uri", "REDACTED"}},
		{"credentials after a mistyped scheme", `key_vault_uri = "https:/spire:Pa55w0rdXy@v.vault.azure.net/"` + uriTail, []string{"Pa55w0rdXy"},
			[]string{"key_vault_uri", "REDACTED"}},
		{"credentials over http", `key_vault_uri = "http://spire:Pa55w0rdXy@v.vault.azure.net/?sig=Qm9vYmFy"` + uriTail, []string{"Pa55w0rdXy", "Qm9vYmFy"},
			[]string{"key_vault_uri", "REDACTED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse(tt.hcl, testTD, []config.Kind{Kind()})
			if err == nil {
				t.Fatalf("Parse accepted %q", tt.hcl)
			}
			for _, s := range tt.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("Parse error %q repeats %q", err, s)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestChainIdentity checks how errors name the default chain's identity:
// from the variables DefaultAzureCredential reads, in its order, without
// any secret.
func TestChainIdentity(t *testing.T) {
	base := map[string]string{"AZURE_TENANT_ID": "t-1", "AZURE_CLIENT_ID": "c-1"}
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"nothing", nil, "the default credential chain"},
		{"only IDs", base, "the default credential chain"},
		{"secret", map[string]string{"AZURE_CLIENT_SECRET": "shh"}, "app c-1 of tenant t-1 (client secret from AZURE_CLIENT_SECRET)"},
		{"certificate", map[string]string{"AZURE_CLIENT_CERTIFICATE_PATH": "/c.pem"}, "app c-1 of tenant t-1 (client certificate /c.pem)"},
		{"workload identity", map[string]string{"AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"}, "app c-1 of tenant t-1 (workload identity, federated token file /var/run/secrets/azure/tokens/azure-identity-token)"},
		{"secret before workload identity", map[string]string{"AZURE_CLIENT_SECRET": "shh", "AZURE_FEDERATED_TOKEN_FILE": "/f"}, "app c-1 of tenant t-1 (client secret from AZURE_CLIENT_SECRET)"},
		{"AZURE_TOKEN_CREDENTIALS selects workload identity", map[string]string{"AZURE_CLIENT_SECRET": "shh", "AZURE_FEDERATED_TOKEN_FILE": "/f", "AZURE_TOKEN_CREDENTIALS": "WorkloadIdentityCredential"}, "app c-1 of tenant t-1 (workload identity, federated token file /f)"},
		{"AZURE_TOKEN_CREDENTIALS=dev", map[string]string{"AZURE_FEDERATED_TOKEN_FILE": "/f", "AZURE_TOKEN_CREDENTIALS": "dev"}, "the default credential chain"},
		{"user password", map[string]string{"AZURE_USERNAME": "u", "AZURE_PASSWORD": "p", "AZURE_FEDERATED_TOKEN_FILE": "/f"}, "the default credential chain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			if tt.env != nil {
				maps.Copy(env, base)
				maps.Copy(env, tt.env)
			}
			got := chainIdentity(func(k string) string { return env[k] })
			if got != tt.want {
				t.Errorf("chainIdentity = %q, want %q", got, tt.want)
			}
			if strings.Contains(got, "shh") {
				t.Errorf("the description reveals the secret: %s", got)
			}
		})
	}
}
