package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

type fakeBackend struct {
	Vault string            `hcl:"fake_vault"`
	Tags  map[string]string `hcl:"fake_tags"`
}

func (f *fakeBackend) Check(string) error {
	if strings.HasPrefix(f.Vault, "http://") {
		return errors.New("fake_vault must be https")
	}
	return nil
}
func (f *fakeBackend) Fixed() string { return f.Vault }
func (f *fakeBackend) Open(context.Context, OpenParams) (engine.Backend, error) {
	return nil, errors.New("not used")
}

type otherBackend struct {
	Ring string `hcl:"other_ring"`
}

func (o *otherBackend) Check(string) error { return nil }
func (o *otherBackend) Fixed() string      { return o.Ring }
func (o *otherBackend) Open(context.Context, OpenParams) (engine.Backend, error) {
	return nil, nil
}

var testKinds = []Kind{
	{Name: "fake", Selector: "fake_vault", New: func() Backend { return &fakeBackend{} }},
	{Name: "other", Selector: "other_ring", New: func() Backend { return &otherBackend{} }},
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		hcl     string
		td      string
		wantErr string // substring; "" means success
		check   func(t *testing.T, c *Config)
	}{
		{
			name: "minimal",
			hcl:  `fake_vault = "https://v" key_identifier_value = "srv1"`,
			check: func(t *testing.T, c *Config) {
				if c.Kind.Name != "fake" || c.Common.MaxKeyCreationsPerHour != DefaultMaxKeyCreationsPerHour {
					t.Errorf("got kind %q max %d", c.Kind.Name, c.Common.MaxKeyCreationsPerHour)
				}
				if c.Backend.(*fakeBackend).Vault != "https://v" {
					t.Errorf("backend not decoded: %+v", c.Backend)
				}
			},
		},
		{
			name: "map and limit",
			hcl:  "fake_vault = \"https://v\"\nkey_identifier_value = \"s\"\nmax_key_creations_per_hour = 3\nfake_tags = { team = \"sec\" }",
			check: func(t *testing.T, c *Config) {
				if c.Common.MaxKeyCreationsPerHour != 3 || c.Backend.(*fakeBackend).Tags["team"] != "sec" {
					t.Errorf("decoded %+v %+v", c.Common, c.Backend)
				}
			},
		},
		{
			name: "deprecated metadata file",
			hcl:  `fake_vault = "https://v" key_metadata_file = "/tmp/x"`,
			check: func(t *testing.T, c *Config) {
				if c.Common.KeyIdentifierFile != "/tmp/x" || len(c.Warnings) != 1 {
					t.Errorf("alias not applied: %+v %v", c.Common, c.Warnings)
				}
			},
		},
		{
			name: "intervals",
			hcl:  `fake_vault = "https://v" key_identifier_value = "s" liveness_interval = "2h" cleanup_interval = "90m"`,
			check: func(t *testing.T, c *Config) {
				l := c.Live()
				if l.Schedule.LivenessInterval != 2*time.Hour || l.Schedule.CleanupInterval != 90*time.Minute || l.MaxCreationsPerHour != 10 {
					t.Errorf("Live() = %+v", l)
				}
			},
		},
		{name: "bad interval", hcl: `fake_vault = "https://v" key_identifier_value = "s" liveness_interval = "often"`, wantErr: `liveness_interval = "often" is not a duration`},
		{
			name: "longest intervals",
			hcl:  `fake_vault = "https://v" key_identifier_value = "s" liveness_interval = "24h" cleanup_interval = "336h"`,
			check: func(t *testing.T, c *Config) {
				if l := c.Live(); l.Schedule.LivenessInterval != engine.DefaultKeepAliveAge || l.Schedule.CleanupInterval != engine.DefaultStaleAfter {
					t.Errorf("Live() = %+v", l)
				}
			},
		},
		{name: "short interval", hcl: `fake_vault = "https://v" key_identifier_value = "s" cleanup_interval = "500ms"`, wantErr: "shorter than the minimum"},
		{
			name: "test interval",
			hcl:  `fake_vault = "https://v" key_identifier_value = "s" cleanup_interval = "1s" liveness_interval = "2s"`,
			check: func(t *testing.T, c *Config) {
				if l := c.Live(); l.Schedule.CleanupInterval != time.Second || l.Schedule.LivenessInterval != 2*time.Second {
					t.Errorf("Live() = %+v", l)
				}
				if len(c.Warnings) != 2 || !strings.Contains(c.Warnings[0], "cleanup_interval") || !strings.Contains(c.Warnings[1], "meant for tests") {
					t.Errorf("Warnings = %q, want one per short interval", c.Warnings)
				}
			},
		},
		{
			name: "migrate from disk",
			hcl:  `fake_vault = "https://v" key_identifier_value = "s" migrate_from { disk_keys_path = "/opt/spire/data/keys.json" }`,
			check: func(t *testing.T, c *Config) {
				if c.Predecessor == nil || c.Predecessor.DiskKeysPath != "/opt/spire/data/keys.json" || c.Predecessor.From != nil {
					t.Errorf("Predecessor = %+v", c.Predecessor)
				}
			},
		},
		{
			name: "migrate from another backend",
			hcl:  "fake_vault = \"https://v\"\nkey_identifier_value = \"s\"\nmigrate_from {\n other_ring = \"r\"\n key_identifier_value = \"old\"\n}",
			check: func(t *testing.T, c *Config) {
				if c.Predecessor == nil || c.Predecessor.From == nil || c.Predecessor.From.Kind.Name != "other" || c.Predecessor.From.Common.KeyIdentifierValue != "old" {
					t.Errorf("Predecessor = %+v", c.Predecessor)
				}
			},
		},
		{name: "migrate disk with extra key", hcl: `fake_vault = "https://v" key_identifier_value = "s" migrate_from { disk_keys_path = "/k" other_ring = "r" }`, wantErr: "disk_keys_path stands alone; remove other_ring"},
		{name: "migrate twice", hcl: `fake_vault = "https://v" key_identifier_value = "s" migrate_from { disk_keys_path = "/k" } migrate_from { disk_keys_path = "/j" }`, wantErr: "more than once"},
		{name: "migrate not a block", hcl: `fake_vault = "https://v" key_identifier_value = "s" migrate_from = "x"`, wantErr: "must be a block"},
		{name: "migrate nested", hcl: `fake_vault = "https://v" key_identifier_value = "s" migrate_from { other_ring = "r" key_identifier_value = "o" migrate_from { disk_keys_path = "/k" } }`, wantErr: `migrate_from: unknown configuration key "migrate_from"`},
		{name: "migrate bad backend", hcl: `fake_vault = "https://v" key_identifier_value = "s" migrate_from { other_ring = "r" }`, wantErr: "migrate_from: set key_identifier_file"},
		{name: "empty trust domain", hcl: `fake_vault = "https://v"`, td: " ", wantErr: "trust domain is empty"},
		{name: "bad hcl", hcl: `fake_vault = "unterminated`, wantErr: "not valid HCL"},
		{name: "no backend", hcl: `key_identifier_value = "s"`, wantErr: "set one of fake_vault, other_ring"},
		{name: "two backends", hcl: `fake_vault = "https://v" other_ring = "r" key_identifier_value = "s"`, wantErr: "more than one backend"},
		{name: "unknown key", hcl: `fake_vault = "https://v" key_identifier_value = "s" colour = "blue"`, wantErr: `unknown configuration key "colour" for fake; valid keys are: cleanup_interval, fake_tags, fake_vault`},
		{name: "other backend key", hcl: `fake_vault = "https://v" key_identifier_value = "s" fake_tags = {} other_x = 1`, wantErr: `unknown configuration key "other_x"`},
		{name: "no identifier", hcl: `fake_vault = "https://v"`, wantErr: "set key_identifier_file"},
		{name: "both identifiers", hcl: `fake_vault = "https://v" key_identifier_file = "/a" key_identifier_value = "b"`, wantErr: "both set"},
		{name: "metadata and identifier file", hcl: `fake_vault = "https://v" key_identifier_file = "/a" key_metadata_file = "/b"`, wantErr: "deprecated name"},
		{name: "identifier too long", hcl: `fake_vault = "https://v" key_identifier_value = "` + strings.Repeat("a", 257) + `"`, wantErr: "at most 256"},
		{name: "limit too high", hcl: `fake_vault = "https://v" key_identifier_value = "s" max_key_creations_per_hour = 1000`, wantErr: "between 1 and 360"},
		{name: "limit negative", hcl: `fake_vault = "https://v" key_identifier_value = "s" max_key_creations_per_hour = -1`, wantErr: "between 1 and 360"},
		{name: "backend check", hcl: `fake_vault = "http://v" key_identifier_value = "s"`, wantErr: "must be https"},
		{name: "wrong type", hcl: `fake_vault = "https://v" key_identifier_value = "s" max_key_creations_per_hour = "lots"`, wantErr: "max_key_creations_per_hour"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td := tt.td
			if td == "" {
				td = "example.org"
			}
			c, err := Parse(tt.hcl, td, testKinds)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestServerIDFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "server_id")
	c, err := Parse(`fake_vault = "https://v" key_identifier_file = "`+path+`"`, "example.org", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	// Validate-style: nothing written.
	id, err := c.ServerID(false)
	if err != nil || id != "" {
		t.Fatalf("ServerID(false) = %q, %v; want empty, nil", id, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("ServerID(false) wrote the file: %v", err)
	}
	id, err = c.ServerID(true)
	if err != nil || len(id) != 36 {
		t.Fatalf("ServerID(true) = %q, %v", id, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode = %v, %v; want 0600", st.Mode(), err)
	}
	again, err := c.ServerID(true)
	if err != nil || again != id {
		t.Fatalf("second ServerID = %q, %v; want %q", again, err, id)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not-a-uuid"), 0o600)
	c.Common.KeyIdentifierFile = bad
	if _, err := c.ServerID(true); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad file error = %v; want one naming %s", err, bad)
	}
	if data, _ := os.ReadFile(bad); string(data) != "not-a-uuid" {
		t.Errorf("bad file was overwritten: %q", data)
	}
}

func TestKindKeys(t *testing.T) {
	got := strings.Join(testKinds[0].Keys(), ",")
	want := "cleanup_interval,fake_tags,fake_vault,key_identifier_file,key_identifier_value,key_metadata_file,liveness_interval,max_key_creations_per_hour,migrate_from"
	if got != want {
		t.Errorf("Keys() = %s, want %s", got, want)
	}
}

// strictBackend restricts server IDs, as Cloud KMS does: this one accepts
// only IDs starting with "ok".
type strictBackend struct {
	Vault string `hcl:"strict_vault"`
}

func (s *strictBackend) Check(string) error { return nil }
func (s *strictBackend) Fixed() string      { return s.Vault }
func (s *strictBackend) Open(context.Context, OpenParams) (engine.Backend, error) {
	return nil, errors.New("not used")
}
func (s *strictBackend) CheckServerID(id string) error {
	if !strings.HasPrefix(id, "ok") {
		return errors.New("strict server IDs start with ok")
	}
	return nil
}

// TestServerIDChecker checks that a backend's server ID rules apply where
// the ID becomes known: key_identifier_value in Parse (so Validate refuses
// it), an existing key_identifier_file's ID in ServerID; a missing file is
// not checked, and backends without rules are not asked.
func TestServerIDChecker(t *testing.T) {
	kinds := append(slices.Clone(testKinds), Kind{Name: "strict", Selector: "strict_vault", New: func() Backend { return &strictBackend{} }})
	if _, err := Parse(`strict_vault = "v" key_identifier_value = "ok-1"`, "example.org", kinds); err != nil {
		t.Fatalf("Parse with an accepted ID: %v", err)
	}
	_, err := Parse(`strict_vault = "v" key_identifier_value = "bad"`, "example.org", kinds)
	if err == nil || err.Error() != `key_identifier_value "bad" cannot be used with strict: strict server IDs start with ok` {
		t.Errorf("Parse with a refused ID = %v", err)
	}
	if _, err := Parse(`fake_vault = "https://v" key_identifier_value = "bad"`, "example.org", kinds); err != nil {
		t.Errorf("a backend without rules: %v", err)
	}

	// The file's ID (a UUID, which this backend refuses) is checked once
	// it exists; a missing file has no ID to check yet.
	path := filepath.Join(t.TempDir(), "id")
	c, err := Parse(`strict_vault = "v" key_identifier_file = "`+path+`"`, "example.org", kinds)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := c.ServerID(false); id != "" || err != nil {
		t.Fatalf("ServerID(false) of a missing file = %q, %v; want empty, nil", id, err)
	}
	for _, create := range []bool{true, false} {
		id, err := c.ServerID(create)
		if id != "" || err == nil || !strings.Contains(err.Error(), "key_identifier_file "+path+" holds the server ID") || !strings.Contains(err.Error(), "strict server IDs start with ok") {
			t.Errorf("ServerID(%v) of a refused file ID = %q, %v", create, id, err)
		}
	}
}

// TestIntervalMaximum checks the longest liveness_interval and
// cleanup_interval: a liveness interval past the keep-alive age let a key
// SPIRE still used go unrefreshed until a peer retired it as abandoned
// (issue 15, defect 4), and an unbounded cleanup interval let abandoned keys
// stay billed indefinitely. The error names the key, the value, the maximum
// and why.
func TestIntervalMaximum(t *testing.T) {
	tests := []struct {
		name, key, value string
		want             []string
	}{
		{"liveness 400h", "liveness_interval", "400h", []string{`liveness_interval = "400h" is longer than the maximum of 24h`, "alive once its last update is 24h old", "retire a key not updated for 336h (14 days)", "look abandoned"}},
		{"liveness just over", "liveness_interval", "24h0m1s", []string{`liveness_interval = "24h0m1s" is longer than the maximum of 24h`}},
		{"liveness a month", "liveness_interval", "720h", []string{`liveness_interval = "720h"`, "maximum of 24h"}},
		{"cleanup just over", "cleanup_interval", "337h", []string{`cleanup_interval = "337h" is longer than the maximum of 336h`, "14 days", "retires them"}},
		{"cleanup a year", "cleanup_interval", "8760h", []string{`cleanup_interval = "8760h"`, "maximum of 336h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(`fake_vault = "https://v" key_identifier_value = "s" `+tt.key+` = "`+tt.value+`"`, "example.org", testKinds)
			if err == nil {
				t.Fatalf("Parse accepted %s = %q", tt.key, tt.value)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error %q does not say %q", err, w)
				}
			}
		})
	}
	// At the maximum, a served key is at most KeepAliveAge + the interval
	// old when every liveness pass succeeds, and a peer still sees it fresh
	// after 11 failed passes in a row.
	if age := engine.DefaultKeepAliveAge + 12*engine.DefaultKeepAliveAge; age >= engine.DefaultStaleAfter {
		t.Errorf("at the longest liveness_interval a served key gets %s old after 11 failed passes: not younger than the stale period %s", age, engine.DefaultStaleAfter)
	}
}

// TestServerIDText checks the rule every server ID follows whatever the
// backend: "srv-a " was accepted, and Key Vault's listing then skipped every
// key tagged with it (issue 15, defect 5). The error names the key and says
// which characters are allowed.
func TestServerIDText(t *testing.T) {
	tests := []struct {
		name, value string // value as written in HCL
		wantErr     string // "" means accepted
	}{
		{"plain", `srv-a`, ""},
		{"inner space", `srv a`, ""},
		{"punctuation", `team/srv:a@eu`, ""},
		{"other scripts", `Ünïcødé-サーバー`, ""},
		{"trailing space", `srv-a `, "begins or ends with white space"},
		{"leading space", ` srv-a`, "begins or ends with white space"},
		{"trailing tab", `srv-a\t`, "begins or ends with white space"},
		{"trailing line break", `srv-a\n`, "begins or ends with white space"},
		{"no-break space", `srv-a\u00a0`, "begins or ends with white space"},
		{"em space", `\u2003srv-a`, "begins or ends with white space"},
		{"only spaces", `   `, "begins or ends with white space"},
		{"inner line break", `srv\na`, "control character"},
		{"inner tab", `srv\ta`, "control character"},
		{"escape", `srv\u001b[0ma`, "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(`fake_vault = "https://v" key_identifier_value = "`+tt.value+`"`, "example.org", testKinds)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted key_identifier_value %q", tt.value)
			}
			for _, w := range []string{"key_identifier_value", tt.wantErr, "any printable characters"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error %q does not say %q", err, w)
				}
			}
		})
	}
	// Invalid UTF-8 cannot come through HCL (its scanner refuses it), nor
	// from key_identifier_file (a UUID): the rule refuses it all the same.
	if err := checkServerIDText("srv\xff"); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("checkServerIDText of invalid UTF-8 = %v", err)
	}
}

// TestParseUndecodable checks that plugin_data the HCL decoder cannot turn
// into the configuration gets an error naming the key and its line, never a
// panic: `key_vault_uri {}` (a block where a string belongs) made HCL v1's
// decoder index an empty list (issue 15, defect 10), and FuzzParse found
// `memory_backend{}`. Nor may the error quote the value (the decoder's
// strconv errors did).
func TestParseUndecodable(t *testing.T) {
	const base = "fake_vault = \"https://v\"\nkey_identifier_value = \"s\"\n"
	tests := []struct {
		name, hcl string
		want      []string
	}{
		{"empty block for the selector", "fake_vault {}", []string{"configuration key fake_vault (line 1)", "want a string in double quotes, found a block"}},
		{"empty block, equals", "fake_vault = {}\nkey_identifier_value = \"s\"", []string{"fake_vault (line 1)", "found a block"}},
		{"empty block for a common string", "fake_vault = \"https://v\"\nkey_identifier_value {}", []string{"key_identifier_value (line 2)", "found a block"}},
		{"block with content", base + "cleanup_interval { a = 1 }", []string{"cleanup_interval (line 3)", "found a block"}},
		{"labelled block", base + "key_identifier_file \"x\" {}", []string{"key_identifier_file (line 3)", "found a labelled block"}},
		{"list for a string", base + "liveness_interval = [\"6h\"]", []string{"liveness_interval (line 3)", "found a list"}},
		{"empty list for a number", base + "max_key_creations_per_hour = []", []string{"max_key_creations_per_hour (line 3)", "want a whole number, found a list"}},
		{"empty block for a number", base + "max_key_creations_per_hour {}", []string{"max_key_creations_per_hour (line 3)", "found a block"}},
		{"number out of range", base + "max_key_creations_per_hour = 99999999999999999999", []string{"max_key_creations_per_hour (line 3)", "a number out of range"}},
		{"bool for a string", base + "key_metadata_file = true", []string{"key_metadata_file (line 3)", "found true or false"}},
		{"decimal for a number", base + "max_key_creations_per_hour = 1.5", []string{"max_key_creations_per_hour (line 3)", "found a decimal number"}},
		{"string for a map", base + "fake_tags = \"team\"", []string{"fake_tags (line 3)", `such as fake_tags = { name = "value" }`, "found a string"}},
		{"empty block in a map", base + "fake_tags = {\n  team {}\n}", []string{"fake_tags (line 3)", "entry on line 4 is a block"}},
		{"list in a map", base + "fake_tags = { team = [] }", []string{"fake_tags (line 3)", "entry on line 3 is a list"}},
		{"labelled block in a map", base + "fake_tags { team \"x\" {} }", []string{"fake_tags (line 3)", "a labelled block"}},
		{"migrate_from path block", base + "migrate_from {\n  disk_keys_path {}\n}", []string{"migrate_from: configuration key disk_keys_path (line 4)", "found a block"}},
		{"migrate_from labelled", base + "migrate_from \"old\" {\n  disk_keys_path = \"/k\"\n}", []string{"migrate_from must be a block"}},
		{"migrate_from backend block", base + "migrate_from {\n  other_ring {}\n  key_identifier_value = \"o\"\n}", []string{"migrate_from: configuration key other_ring (line 4)", "found a block"}},
		{"escape HCL cannot unquote", base + "key_metadata_file = \"/x\\700\"", []string{"key_metadata_file (line 3)", "a string whose quotes or escapes HCL cannot read"}},
		{"JSON empty object", `{"fake_vault": {}, "key_identifier_value": "s"}`, []string{"fake_vault (line 1)", "found a block"}},
		{"JSON key Go cannot unquote", `{"fake_vault": "https://v", "key_identifier_\777value": "s"}`, []string{"a key on line 1 cannot be read"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.hcl, "example.org", testKinds)
			if err == nil {
				t.Fatalf("Parse accepted %q", tt.hcl)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "99999") || strings.Contains(err.Error(), "strconv") {
				t.Errorf("Parse error %q quotes the value", err)
			}
		})
	}
}

// TestRedactURL checks the form in which URL settings appear in errors: no
// user information, query or fragment, which may hold a password or a SAS
// token, even when the URL does not parse.
func TestRedactURL(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"https://v.vault.azure.net/", "https://v.vault.azure.net/"},
		{"https://user:pass@v.vault.azure.net/", "https://REDACTED@v.vault.azure.net/"},
		{"https://user@host", "https://REDACTED@host"},
		{"https://a@b:c@host/x", "https://REDACTED@host/x"},
		{"https://v.vault.azure.net/?sig=abc&sv=1", "https://v.vault.azure.net/?REDACTED"},
		{"https://v.vault.azure.net/#frag", "https://v.vault.azure.net/#REDACTED"},
		{"https://u:p@host/?sig=abc", "https://REDACTED@host/?REDACTED"},
		{"https://host/?next=https://u:p@other", "https://host/?REDACTED"},
		{"https:/user:pass@host", "REDACTED@host"},
		{"user:pass@host:443", "REDACTED@host:443"},
		{"https://u:p%zz@host/", "https://REDACTED@host/"},
		{"", ""},
	} {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestParseReportsEveryProblem checks that Parse lists every problem of a
// configuration, each naming its key, rather than stopping at the first: an
// unknown key does not hide a backend's own check, nor a bad common value a
// bad migrate_from.
func TestParseReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		hcl  string
		want []string // one substring per problem, in order
	}{
		{
			name: "unknown key and a backend check",
			hcl:  `fake_vault = "http://v" key_identifier_value = "s" colour = "blue"`,
			want: []string{`unknown configuration key "colour"`, "fake_vault must be https"},
		},
		{
			name: "two unknown keys",
			hcl:  `fake_vault = "https://v" key_identifier_value = "s" colour = "blue" size = 3`,
			want: []string{`unknown configuration key "colour"`, `unknown configuration key "size"`},
		},
		{
			name: "common values and a backend check",
			hcl:  `fake_vault = "http://v" max_key_creations_per_hour = 1000 liveness_interval = "often"`,
			want: []string{"set key_identifier_file", "between 1 and 360", `liveness_interval = "often"`, "fake_vault must be https"},
		},
		{
			name: "two values of the wrong type",
			hcl:  `fake_vault = "https://v" key_identifier_value = "s" max_key_creations_per_hour = "lots" cleanup_interval = {}`,
			want: []string{"max_key_creations_per_hour (line 1) has a value of the wrong type", "cleanup_interval (line 1) has a value of the wrong type"},
		},
		{
			name: "a backend key of the wrong type is not checked again",
			hcl:  `fake_vault = "https://v" key_identifier_value = "s" fake_tags = "x" colour = 1`,
			want: []string{`unknown configuration key "colour"`, "fake_tags (line 1) has a value of the wrong type"},
		},
		{
			name: "an identifier of the wrong type is not reported again as missing",
			hcl:  `fake_vault = "https://v" key_identifier_value = {} colour = 1`,
			want: []string{`unknown configuration key "colour"`, "key_identifier_value (line 1) has a value of the wrong type"},
		},
		{
			name: "problems on both sides of a migration",
			hcl:  `fake_vault = "http://v" key_identifier_value = "s" migrate_from { other_ring = "r" shade = 2 }`,
			want: []string{"fake_vault must be https", `migrate_from: unknown configuration key "shade"`, "migrate_from: set key_identifier_file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(tt.hcl, "example.org", testKinds)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", c)
			}
			got := List(err)
			if len(got) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(got), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i].Error(), w) {
					t.Errorf("problem %d = %q, want it to contain %q", i+1, got[i], w)
				}
				// The one-line message holds every problem too, numbered.
				if !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), "("+string(rune('0'+i+1))+") ") {
					t.Errorf("message %q does not list problem %d (%q)", err, i+1, w)
				}
			}
			if !strings.HasPrefix(err.Error(), string(rune('0'+len(tt.want)))+" configuration problems:") {
				t.Errorf("message %q does not start with the number of problems", err)
			}
		})
	}
}

// TestList checks that List keeps what a caller put before the problems
// (the file they came from) on each of them, and passes a lone error through.
func TestList(t *testing.T) {
	p := Problems{errors.New("a is wrong"), errors.New("b is wrong")}
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"nil", nil, nil},
		{"plain error", errors.New("x"), []string{"x"}},
		{"problems", p, []string{"a is wrong", "b is wrong"}},
		{"wrapped problems", fmt.Errorf("server.conf: %w", p), []string{"server.conf: a is wrong", "server.conf: b is wrong"}},
		{"one problem reads as itself", Problems{errors.New("only")}, []string{"only"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range List(tt.err) {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("List = %q, want %q", got, tt.want)
			}
		})
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", p), p[1]) {
		t.Error("errors.Is does not find a problem inside a wrapped Problems")
	}
}
