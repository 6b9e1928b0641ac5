package config_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/keymanager"
)

// secretBackend is a kind with a credential, like azure_key_vault's
// app_secret: its value must never reach an error message.
type secretBackend struct {
	Vault  string `hcl:"secret_vault"`
	Secret string `hcl:"client_secret"`
}

func (b *secretBackend) Check(string) error { return nil }
func (b *secretBackend) Fixed() string      { return b.Vault }
func (b *secretBackend) Open(context.Context, config.OpenParams) (keymanager.Backend, error) {
	return nil, nil
}

// fuzzSecret is the credential FuzzParse places in every configuration.
const fuzzSecret = "Zq8wFuzzClientSecret~Kp3"

// FuzzParse feeds config.Parse arbitrary plugin_data, alone and after a
// well-formed credential line: it never panics, every error is a plain,
// non-empty UTF-8 message, and no error repeats the credential.
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
	} {
		f.Add(s)
	}
	kinds := []config.Kind{memory.Kind(), {Name: "secret", Selector: "secret_vault", New: func() config.Backend { return &secretBackend{} }}}
	f.Fuzz(func(t *testing.T, text string) {
		if strings.Contains(text, fuzzSecret[:8]) {
			return
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
			if strings.Contains(msg, fuzzSecret) {
				t.Errorf("Parse(%q) error repeats the credential: %q", in, msg)
			}
		}
		check(text)
		check("secret_vault = \"v\"\nclient_secret = \"" + fuzzSecret + "\"\n" + text)
		check(text + "\nclient_secret = \"" + fuzzSecret + "\"\n")
	})
}
