package main

import (
	"strings"
	"testing"
)

// TestValidateReportsEveryConfigurationProblem runs validate on server.conf
// files with several mistakes, for each cloud's real configuration, and
// checks that one run reports all of them (each naming its key, each with a
// fix), says the cloud checks were not run, and exits 1; in JSON for
// scripts and as a table for a person.
func TestValidateReportsEveryConfigurationProblem(t *testing.T) {
	tests := []struct {
		name       string
		pluginData string
		// want holds one substring per expected problem, in report order.
		want []string
	}{
		{
			name: "azure: unknown key and a plaintext vault URL",
			pluginData: `key_vault_uri = "http://example.vault.azure.net/"
            key_identifier_value = "server-a"
            colour = "blue"`,
			want: []string{`unknown configuration key "colour" for azure_key_vault`, `key_vault_uri "http://example.vault.azure.net/" must start with https://`},
		},
		{
			name: "azure: a common key and three of the backend's",
			pluginData: `key_vault_uri = "http://example.vault.azure.net/"
            key_identifier_value = "server-a"
            max_key_creations_per_hour = 5000
            tenant_id = "00000000-0000-0000-0000-000000000000"
            key_protection = "titanium"`,
			want: []string{"max_key_creations_per_hour is 5000", "key_vault_uri", "tenant_id, app_id and app_secret go together", `key_protection = "titanium" is not valid`},
		},
		{
			name: "gcp: unknown key, protection and signature scheme",
			pluginData: `key_ring = "projects/p/locations/global/keyRings/r"
            key_identifier_value = "server-a"
            key_protection = "titanium"
            rsa_signature_scheme = "raw"
            shade = 3`,
			want: []string{`unknown configuration key "shade" for gcp_kms`, `key_protection = "titanium"`, `rsa_signature_scheme = "raw"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := writeServerConf(t, "kmskeeper", tt.pluginData, false)
			r := runKmskeeper(t, "validate", "--json", "--config", conf)
			if r.code != 1 {
				t.Fatalf("exit code %d, want 1\n%s", r.code, r)
			}
			rep := decodeJSON[validateReport](t, r)
			if rep.OK || len(rep.Checks) != len(tt.want)+1 {
				t.Fatalf("report has %d checks (ok %v), want %d configuration problems and the skipped cloud checks\n%s", len(rep.Checks), rep.OK, len(tt.want), r)
			}
			for i, w := range tt.want {
				c := rep.Checks[i]
				if c.Name != "configuration" || c.OK || !strings.Contains(c.Detail, w) || !strings.Contains(c.Detail, conf) || c.Fix == "" {
					t.Errorf("check %d = %+v, want a failed configuration check of %s saying %q, with a fix", i, c, conf, w)
				}
			}
			if last := rep.Checks[len(tt.want)]; last.Name != "cloud checks" || last.OK || !strings.Contains(last.Detail, "not run") {
				t.Errorf("last check = %+v, want the cloud checks reported as not run", last)
			}

			table := runKmskeeper(t, "validate", "--config", conf)
			if table.code != 1 || strings.Count(table.stdout, "FAIL") != len(tt.want)+1 || strings.Count(table.stdout, "fix: ") != len(tt.want)+1 || !strings.Contains(table.stdout, "Some checks failed.") {
				t.Errorf("the table does not list every problem with its fix:\n%s", table)
			}
		})
	}
}

// TestValidateOffline checks that --offline runs the configuration checks
// alone: a good configuration passes with no cloud to ask (the vault named
// does not exist), a bad one still lists its problems, and --probe is
// refused beside it.
func TestValidateOffline(t *testing.T) {
	tests := []struct {
		name, pluginData string
		code             int
	}{
		{"azure, good", `key_vault_uri = "https://nowhere-at-all.vault.azure.net/"
            key_identifier_file = "/run/spire/data/kmskeeper-server-id"`, 0},
		{"gcp, good", `key_ring = "projects/p/locations/global/keyRings/r"
            key_identifier_value = "server-a"`, 0},
		{"azure, unknown key", `key_vault_uri = "https://nowhere-at-all.vault.azure.net/"
            key_identifier_value = "server-a"
            colour = "blue"`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := writeServerConf(t, "kmskeeper", tt.pluginData, false)
			r := runKmskeeper(t, "validate", "--offline", "--json", "--config", conf)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d\n%s", r.code, tt.code, r)
			}
			rep := decodeJSON[validateReport](t, r)
			for _, c := range rep.Checks {
				if c.Name != "configuration" && c.Name != "server identity" && c.Name != "cloud checks" && c.Name != "configuration warning" {
					t.Errorf("--offline ran check %q", c.Name)
				}
			}
		})
	}
	if r := runKmskeeper(t, "validate", "--offline", "--probe", "--config", "x"); r.code != 2 {
		t.Errorf("--offline --probe: exit %d, want 2", r.code)
	}
}
