package azurekv

import (
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
			if h := c.authorityHost(c.clientOptions()); h != "https://login.microsoftonline.us/" {
				t.Errorf("authority = %s, want the government cloud's", h)
			}
		}},
		{name: "china managed HSM", hcl: `key_vault_uri = "https://h.managedhsm.azure.cn/"
key_identifier_value = "s"`, check: func(t *testing.T, c *Config) {
			if c.vault.cloudName != "AzureChina" || c.vault.kind != kindManagedHSM {
				t.Errorf("got %+v", c)
			}
			if h := c.authorityHost(c.clientOptions()); h != "https://login.chinacloudapi.cn/" {
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
		{name: "too many tags", hcl: "key_vault_uri = \"https://v.vault.azure.net/\"\nkey_identifier_value = \"s\"\n" + many, wantErr: "at most 12 are allowed"},
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
