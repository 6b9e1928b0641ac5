package operator_test

import (
	"strings"
	"testing"

	"github.com/kmskeeper/kmskeeper/operator"
)

// TestReadSourceHidesSecrets checks that reading a configuration for an
// operator command (kmskeeper validate --config) never repeats a secret it
// holds and never panics: HCL's parse error quoted an unquoted app_secret
// whole, in a server.conf as in a plugin_data file (issue 15, defect 9), and
// a block where the server block's trust_domain belongs made HCL's decoder
// panic (defect 10). The error still names the file and the line.
func TestReadSourceHidesSecrets(t *testing.T) {
	tests := []struct {
		name, conf, secret string
		want               []string
	}{
		{"server.conf, unquoted app_secret", `plugins {
    KeyManager "kmskeeper" {
        plugin_cmd = "/opt/spire/bin/kmskeeper"
        plugin_data {
            app_secret = Xk9Qw$Vb7Lm
        }
    }
}`, "Xk9Qw", []string{"is not valid HCL at line 5", "(after key plugin_data on line 4)", "double quotes"}},
		{"plugin_data file, unquoted app_secret", "test_vault = \"v\"\napp_secret = 7Hq2Ws9Kd\n", "Hq2Ws9Kd", []string{"is not valid HCL at line 3"}},
		{"block for trust_domain", `server { trust_domain {} }
plugins { KeyManager "k" { plugin_data { test_vault = "v" } } }`, "", []string{"server block: configuration key trust_domain (line 1)", "found a block"}},
		{"JSON key HCL cannot unquote", `{"plugi\777ns": {"KeyManager": {"k": {"plugin_data": {"test_vault": "v"}}}}}`, "", []string{"cannot be read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := write(t, "server.conf", tt.conf)
			_, err := operator.ReadSource(path, "")
			if err == nil {
				t.Fatalf("ReadSource accepted %q", tt.conf)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("ReadSource error %q repeats the secret", err)
			}
			for _, w := range append([]string{path}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ReadSource error %q does not say %q", err, w)
				}
			}
		})
	}
}
