package plugin

import (
	"context"
	"strings"
	"testing"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/keymanager"
)

// fixedBackend is a config.Backend whose Fixed part is its location.
type fixedBackend struct{ location string }

func (f fixedBackend) Check(string) error { return nil }
func (f fixedBackend) Fixed() string      { return f.location }
func (f fixedBackend) Open(context.Context, config.OpenParams) (keymanager.Backend, error) {
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
			got := fixedChanges(cur, tt.cfg, tt.td, tt.serverID)
			switch {
			case tt.wantIn == "" && got != "":
				t.Errorf("fixedChanges = %q, want none", got)
			case tt.wantIn != "" && !strings.Contains(got, tt.wantIn):
				t.Errorf("fixedChanges = %q, want it to contain %q", got, tt.wantIn)
			}
		})
	}
}
