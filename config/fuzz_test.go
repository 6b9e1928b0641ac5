package config_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kmskeeper/kmskeeper/backend/azurekv"
	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

// secretBackend is a kind with a credential, like azure_key_vault's
// app_secret: its value must never reach an error message.
type secretBackend struct {
	Vault  string `hcl:"secret_vault"`
	Secret string `hcl:"client_secret"`
}

func (b *secretBackend) Check(string) error { return nil }
func (b *secretBackend) Fixed() string      { return b.Vault }
func (b *secretBackend) Open(context.Context, config.OpenParams) (engine.Backend, error) {
	return nil, nil
}

// fuzzSecret is the credential FuzzParse places in every configuration: in
// client_secret and app_secret, quoted and not (a template that lost its
// quotes), and in key_vault_uri's user information and query. It has an
// Azure client secret's '~'; fuzzSecretAlnum, the same without it, is what
// HCL reads as one unquoted name.
const (
	fuzzSecret      = "Zq8wF7uzK3pX~Lm4Tr9"
	fuzzSecretAlnum = "Zq8wF7uzK3pXLm4Tr9"
)

// secretWindows returns every 6-character run of the secrets' letters and
// digits: an error that quotes part of an unquoted secret (HCL stops a name
// at '~') holds one of them.
func secretWindows() []string {
	var out []string
	for _, p := range append(strings.Split(fuzzSecret, "~"), fuzzSecretAlnum) {
		for i := 0; i+6 <= len(p); i++ {
			out = append(out, p[i:i+6])
		}
	}
	return out
}

// FuzzParse feeds config.Parse arbitrary plugin_data, alone and next to a
// credential written in each way a configuration carries one: it never
// panics, every error is a plain, non-empty UTF-8 message, no error repeats
// any part of the credential, and no error comes from the last line of
// defence (a recovered panic of HCL's parser or decoder): the shape checks
// must have refused the value first. Its long run is in docs/testing.md.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`memory_backend = "/v" key_identifier_value = "s"`,
		`memory_backend = "/v" key_identifier_file = "/id" max_key_creations_per_hour = 5 liveness_interval = "1h" cleanup_interval = "2h"`,
		`memory_backend = "/v" key_metadata_file = "/id"`,
		`memory_backend = "/v" key_identifier_value = "s" migrate_from { disk_keys_path = "/k" }`,
		`secret_vault = "v" key_identifier_value = "s" migrate_from { memory_backend = "/o" key_identifier_value = "o" }`,
		`secret_vault = "v" memory_backend = "/v"`,
		`memory_backend = ["/v"] key_identifier_value = {a = 1}`,
		`memory_backend = "/v" max_key_creations_per_hour = "lots" cleanup_interval = "-1s"`,
		"memory_backend = <<EOF\n/v\nEOF\n",
		`a "b" "c" { d = [1, 2.5, true, "x"] }`,
		"", "{", "=", `"`, "# comment only", "key_identifier_value = \"\xff\"",
		`key_vault_uri = "https://v.vault.azure.net/" key_identifier_value = "s" tenant_id = "t" app_id = "a" app_secret = "x"`,
		`key_vault_uri = "https://v.vault.azure.net/" key_identifier_value = "s" key_tags = { a = "b" } use_msi = true`,
		`key_vault_uri {}`,
		`memory_backend{}`,
		`{"memory_backend": "/v", "key_identifier_value": "s"}`,
		`{"key_vault_uri": {}, "key_tags": {"a": "b"}}`,
	} {
		f.Add(s)
	}
	kinds := []config.Kind{memory.Kind(), azurekv.Kind(), {Name: "secret", Selector: "secret_vault", New: func() config.Backend { return &secretBackend{} }}}
	windows := secretWindows()
	f.Fuzz(func(t *testing.T, text string) {
		for _, w := range windows {
			if strings.Contains(text, w) {
				return
			}
		}
		check := func(in string) {
			_, err := config.Parse(in, "example.org", kinds)
			if err == nil {
				return
			}
			msg := err.Error()
			if msg == "" || !utf8.ValidString(msg) && utf8.ValidString(in) || strings.Contains(msg, "goroutine ") {
				t.Errorf("Parse(%q) error is not a plain message: %q", in, msg)
			}
			for _, w := range windows {
				if strings.Contains(msg, w) {
					t.Errorf("Parse(%q) error repeats part of the credential (%q): %q", in, w, msg)
				}
			}
			if strings.Contains(msg, "the HCL decoder failed") || strings.Contains(msg, "the HCL parser failed") {
				t.Errorf("Parse(%q) reached a recovered panic; check the value's shape before HCL does: %q", in, msg)
			}
		}
		check(text)
		check("secret_vault = \"v\"\nclient_secret = \"" + fuzzSecret + "\"\n" + text)
		check(text + "\nclient_secret = \"" + fuzzSecret + "\"\n")
		check("app_secret = " + fuzzSecret + "\n" + text)
		check(text + "\napp_secret = " + fuzzSecret + "\n")
		check("app_secret = " + fuzzSecretAlnum + " " + text)
		check(text + "\napp_secret = " + fuzzSecretAlnum + "\n")
		check(text + "\nkey_vault_uri = \"https://spire:" + fuzzSecret + "@v.vault.azure.net/\"\n")
		check(text + "\nkey_vault_uri = \"https://v.vault.azure.net/?sv=2024&sig=" + fuzzSecret + "\"\n")
	})
}
