package plugin

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
	configv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/common/config/v1"
)

// fixedBackend is a config.Backend whose Fixed part is its location.
type fixedBackend struct{ location string }

func (f fixedBackend) Check(string) error { return nil }
func (f fixedBackend) Fixed() string      { return f.location }
func (f fixedBackend) Open(context.Context, config.OpenParams) (engine.Backend, error) {
	return nil, nil
}

func TestFixedChanges(t *testing.T) {
	cfg := func(kind, location, idFile string) *config.Config {
		return &config.Config{
			Kind:    config.Kind{Name: kind},
			Backend: fixedBackend{location},
			Common:  config.Common{KeyIdentifierFile: idFile},
		}
	}
	cur := &running{cfg: cfg("azure_key_vault", "https://a.vault.azure.net", ""), trustDomain: "example.org", serverID: "server-a"}
	tests := []struct {
		name     string
		cfg      *config.Config
		td       string
		serverID string
		wantIn   string // "" means nothing fixed changed
	}{
		{"same", cfg("azure_key_vault", "https://a.vault.azure.net", ""), "example.org", "server-a", ""},
		{"trust domain", cfg("azure_key_vault", "https://a.vault.azure.net", ""), "other.org", "server-a", `trust domain changed from "example.org" to "other.org"`},
		{"backend kind", cfg("gcp_kms", "https://a.vault.azure.net", ""), "example.org", "server-a", "backend changed from azure_key_vault to gcp_kms"},
		{"location", cfg("azure_key_vault", "https://b.vault.azure.net", ""), "example.org", "server-a", "location changed from https://a.vault.azure.net to https://b.vault.azure.net"},
		{"server ID", cfg("azure_key_vault", "https://a.vault.azure.net", ""), "example.org", "server-b", "server ID changed from server-a to server-b"},
		{"identifier file missing", cfg("azure_key_vault", "https://a.vault.azure.net", "/var/lib/spire/id"), "example.org", "", "/var/lib/spire/id does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fixedChanges(cur, tt.cfg, tt.td, tt.serverID, nil)
			switch {
			case tt.wantIn == "" && got != "":
				t.Errorf("fixedChanges = %q, want none", got)
			case tt.wantIn != "" && !strings.Contains(got, tt.wantIn):
				t.Errorf("fixedChanges = %q, want it to contain %q", got, tt.wantIn)
			}
		})
	}
}

// TestPredecessorChanges checks which changes of migrate_from a re-Configure
// accepts: only its removal once no key is served from the predecessor, since
// the predecessor's keys are read at start.
func TestPredecessorChanges(t *testing.T) {
	disk := func(path string) *config.Predecessor { return &config.Predecessor{DiskKeysPath: path} }
	cloud := func(location, id string) *config.Predecessor {
		return &config.Predecessor{From: &config.Config{
			Kind:    config.Kind{Name: "gcp_kms"},
			Backend: fixedBackend{location},
			Common:  config.Common{KeyIdentifierValue: id},
		}}
	}
	cfg := func(p *config.Predecessor) *config.Config {
		return &config.Config{Kind: config.Kind{Name: "azure_key_vault"}, Backend: fixedBackend{"https://a.vault.azure.net"}, Predecessor: p}
	}
	tests := []struct {
		name    string
		was, is *config.Predecessor
		pending []string
		wantIn  string // "" means accepted
	}{
		{"none", nil, nil, nil, ""},
		{"same disk file", disk("/k.json"), disk("/k.json"), []string{"x509-CA-A"}, ""},
		{"same cloud", cloud("projects/p/locations/l/keyRings/r", "old"), cloud("projects/p/locations/l/keyRings/r", "old"), []string{"x509-CA-A"}, ""},
		{"added", nil, disk("/k.json"), nil, "migrate_from was added (disk_keys_path /k.json)"},
		{"other file", disk("/k.json"), disk("/other.json"), nil, "changed from disk_keys_path /k.json to disk_keys_path /other.json"},
		{"other server ID", cloud("projects/p/locations/l/keyRings/r", "old"), cloud("projects/p/locations/l/keyRings/r", "older"), nil, "(key_identifier_value older)"},
		{"removed after completion", disk("/k.json"), nil, nil, ""},
		{"removed too early", disk("/k.json"), nil, []string{"x509-CA-B", "JWT-Signer-A"}, "key IDs JWT-Signer-A, x509-CA-B are still served from the predecessor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cur := &running{cfg: cfg(tt.was), trustDomain: "example.org", serverID: "server-a"}
			got := fixedChanges(cur, cfg(tt.is), "example.org", "server-a", tt.pending)
			switch {
			case tt.wantIn == "" && got != "":
				t.Errorf("fixedChanges = %q, want none", got)
			case tt.wantIn != "" && !strings.Contains(got, tt.wantIn):
				t.Errorf("fixedChanges = %q, want it to contain %q", got, tt.wantIn)
			}
		})
	}
}

// TestValidateNotesEachProblem checks that Validate gives SPIRE one note per
// configuration problem, in the order the configuration has them, rather
// than one note holding them all.
func TestValidateNotesEachProblem(t *testing.T) {
	s := newServer([]config.Kind{memory.Kind()}, hclog.NewNullLogger())
	core := &configv1.CoreConfiguration{TrustDomain: "example.org"}
	hcl := "memory_backend = \"/v\"\nkey_identifier_value = \"s\"\nno_such_key = 1\nmax_key_creations_per_hour = []"
	resp, err := (&configService{s: s}).Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: hcl})
	if err != nil || resp.GetValid() {
		t.Fatalf("Validate = %v, %v; want invalid", resp, err)
	}
	notes := resp.GetNotes()
	if len(notes) != 2 || !strings.Contains(notes[0], "no_such_key") || !strings.Contains(notes[1], "max_key_creations_per_hour") {
		t.Fatalf("Validate notes = %q, want one naming no_such_key and one naming max_key_creations_per_hour", notes)
	}
	for _, n := range notes {
		if strings.Contains(n, "configuration problems:") {
			t.Errorf("note %q lists several problems; want one per note", n)
		}
	}
}

// TestConfigureUndecodable checks, at SPIRE's boundary, that plugin_data the
// HCL decoder cannot read is refused with InvalidArgument naming the key,
// and that the plugin keeps serving: `memory_backend{}` and
// `key_vault_uri {}` made HCL v1's decoder panic, which in plugin mode lost
// SPIRE the plugin process (issue 15, defect 10). Validate reports the same
// text as one of its notes.
func TestConfigureUndecodable(t *testing.T) {
	s := newServer([]config.Kind{memory.Kind()}, hclog.NewNullLogger())
	core := &configv1.CoreConfiguration{TrustDomain: "example.org"}
	for _, tt := range []struct{ hcl, key string }{
		{"memory_backend{}", "memory_backend"},
		{"memory_backend = \"/v\"\nkey_identifier_value {}", "key_identifier_value"},
		{"memory_backend = \"/v\"\nkey_identifier_value = \"s\"\nmax_key_creations_per_hour = []", "max_key_creations_per_hour"},
	} {
		_, err := (&configService{s: s}).Configure(context.Background(), &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: tt.hcl})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "configuration key "+tt.key) {
			t.Errorf("Configure(%q) = %v, want InvalidArgument naming %s", tt.hcl, err, tt.key)
		}
		resp, err := (&configService{s: s}).Validate(context.Background(), &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: tt.hcl})
		if err != nil || resp.GetValid() || !slices.ContainsFunc(resp.GetNotes(), func(n string) bool { return strings.Contains(n, "configuration key "+tt.key) }) {
			t.Errorf("Validate(%q) = %v, %v; want invalid, with a note naming %s", tt.hcl, resp, err, tt.key)
		}
	}
}
