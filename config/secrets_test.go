package config_test

import (
	"strings"
	"testing"
	"unicode"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/config"
)

// secretKinds are the kinds the secret tests parse with: client_secret is a
// credential, like azure_key_vault's app_secret.
func secretKinds() []config.Kind {
	return []config.Kind{memory.Kind(), {Name: "secret", Selector: "secret_vault", New: func() config.Backend { return &secretBackend{} }}}
}

// secretPieces returns the runs of letters and digits of secret that are 4
// characters or longer: HCL quoted an unquoted value up to the first
// character it does not take in a name ("Xk9Qw" of "Xk9Qw$Vb7Lm/Zt3Rp"), so
// an error must hold none of them, not just the whole secret.
func secretPieces(secret string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(secret, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
		if len(p) >= 4 {
			out = append(out, p)
		}
	}
	return out
}

// TestParseErrorsHideSecrets checks that a configuration error never repeats
// a credential, whatever way it is mistyped: an unquoted app_secret (a
// template that lost its quotes) came back whole in HCL's "Unknown token"
// message (issue 15, defect 9). The error still says where: the line, and
// the key at or before it.
func TestParseErrorsHideSecrets(t *testing.T) {
	const head = "secret_vault = \"v\"\nkey_identifier_value = \"s\"\n"
	tests := []struct {
		name, hcl, secret string
		want              []string
	}{
		{"unquoted, template lost its quotes", head + "client_secret = Xk9Qw$Vb7Lm/Zt3Rp\n", "Xk9Qw$Vb7Lm/Zt3Rp",
			[]string{"line 3", "(key client_secret)", "unquoted text where a value belongs", "double quotes"}},
		{"unquoted with a space", head + "client_secret = Pq4Ws Hy8Jn\n", "Pq4Ws Hy8Jn",
			[]string{"line 3", "client_secret"}},
		{"unquoted, starts with digits", head + "client_secret = 42Fj7Ks9Lq\n", "42Fj7Ks9Lq",
			[]string{"line 3", "client_secret", "not followed by '=' or '{'"}},
		{"unquoted on the next line", head + "client_secret =\nWq2Er5Ty\n", "Wq2Er5Ty",
			[]string{"line 4", "(after key client_secret on line 3)"}},
		{"alone on a line", head + "Mv5Tr9Qz\nclient_secret = \"x\"\n", "Mv5Tr9Qz",
			[]string{"line 4", "(key client_secret)", "nested object expected"}},
		{"alone on the last line", head + "Mv5Tr9Qz\n", "Mv5Tr9Qz",
			[]string{"line 4"}},
		{"in a block in a list", head + "client_secret = [{ x = Bn6Mk2Pw }]\n", "Bn6Mk2Pw",
			[]string{"line 3", "client_secret", "in a list: unquoted text"}},
		{"first line", "client_secret = Gh6Yt3Bn$x\n" + head, "Gh6Yt3Bn",
			[]string{"line 1", "(key client_secret)"}},
		{"JSON", `{"secret_vault": "v", "key_identifier_value": "s", "client_secret": Jn3Kd8Lw}`, "Jn3Kd8Lw",
			[]string{"line 1", "(key client_secret)"}},
		{"an escape HCL cannot unquote", head + "client_secret = \"Cv4Bn7\\777Mk3Lp\"\n", "Cv4Bn7\\777Mk3Lp",
			[]string{"client_secret (line 3)", "a string whose quotes or escapes HCL cannot read"}},
		{"a number where a whole number belongs", head + "max_key_creations_per_hour = \"Rt5Yu8Io\"\n", "Rt5Yu8Io",
			[]string{"max_key_creations_per_hour (line 3)", "want a whole number, found a string that is not a whole number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse(tt.hcl, "example.org", secretKinds())
			if err == nil {
				t.Fatalf("Parse accepted %q", tt.hcl)
			}
			for _, p := range secretPieces(tt.secret) {
				if strings.Contains(err.Error(), p) {
					t.Errorf("Parse error %q repeats %q of the secret", err, p)
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
