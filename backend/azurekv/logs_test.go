package azurekv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/internal/syncbuf"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// TestStartupLogsServedKeys configures the built binary on a vault that
// already holds keys and checks the startup log: one "Serving key" line per
// key ID served, naming the key ID, the key object and the version it signs
// with, and none for superseded generations or other servers' keys.
func TestStartupLogsServedKeys(t *testing.T) {
	t.Parallel()
	ec := func() crypto.Signer { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }
	type seeded struct {
		keyID, serverID, td string
		age                 time.Duration
		served              bool // the newest own generation of its key ID
	}
	for _, tt := range []struct {
		name string
		keys []seeded
	}{
		{name: "empty vault"},
		{name: "own keys among superseded and foreign ones", keys: []seeded{
			{keyID: "x509-CA-A", serverID: "server-a", td: testTD, age: time.Hour, served: true},
			{keyID: "x509-CA-A", serverID: "server-a", td: testTD, age: 30 * time.Hour}, // superseded
			{keyID: "JWT-Signer-A", serverID: "server-a", td: testTD, age: 2 * time.Hour, served: true},
			{keyID: "x509-CA-B", serverID: "server-a", td: testTD, age: 3 * time.Hour, served: true},
			{keyID: "x509-CA-A", serverID: "server-b", td: testTD, age: time.Hour}, // another server
			{keyID: "x509-CA-A", serverID: "server-a", td: "other.org", age: 0},    // another trust domain
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startEmulator(t, keyvault.Options{})
			now := srv.Clock().Now()
			type want struct{ ref, version, fingerprint string }
			wants := map[string]want{} // key ID -> its served generation
			for _, k := range tt.keys {
				s := ec()
				name := keyName(k.keyID)
				kid, err := srv.SeedKey(keyvault.DefaultVaultName, keyvault.SeedKey{
					Name: name, Signer: s, KeyOps: []string{"sign", "verify"},
					Tags:    map[string]string{tagTrustDomain: k.td, tagServerID: k.serverID},
					Created: now.Add(-k.age), Updated: now.Add(-k.age),
				})
				if err != nil {
					t.Fatal(err)
				}
				if k.served {
					id := azkeys.ID(kid)
					wants[k.keyID] = want{ref: name, version: id.Version(), fingerprint: fingerprint(t, s.Public())}
				}
			}

			p := configured(t, pluginEnv(t, srv, allEnv...), srv.VaultURL(keyvault.DefaultVaultName), "server-a", "")
			// "Configured" is logged after Load's lines: once it arrived,
			// every startup line has.
			waitLog(t, p, func(l pluginhost.LogLine) bool { return l.Message == "Configured" })
			got := map[string]int{}
			for _, l := range p.Logs() {
				if l.Message != "Serving key" {
					continue
				}
				id, _ := l.Fields["key_id"].(string)
				got[id]++
				w, ok := wants[id]
				if !ok {
					t.Errorf("logged a key that is not served: %s", l.Raw)
					continue
				}
				if l.Level != "info" || l.Fields["ref"] != w.ref || l.Fields["version"] != w.version || l.Fields["fingerprint"] != w.fingerprint {
					t.Errorf("startup line for %s = %s; want level info, ref %s, version %s, fingerprint %s", id, l.Raw, w.ref, w.version, w.fingerprint)
				}
			}
			for id := range wants {
				if got[id] != 1 {
					t.Errorf("%d startup lines for served key %s, want 1", got[id], id)
				}
			}
			if len(got) != len(wants) {
				t.Errorf("startup lines for key IDs %v, want exactly %d", got, len(wants))
			}
		})
	}
}

// waitLog waits up to 20 s for a log line of p that match accepts.
func waitLog(t *testing.T, p *pluginhost.Plugin, match func(pluginhost.LogLine) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := p.WaitLog(ctx, match); err != nil {
		t.Fatalf("waiting for a log line: %v", err)
	}
}

// TestOddKeyWarnings checks the warning for a key that carries this trust
// domain's tag but is not laid out as SPIRE's keys are: it is logged once
// per such key and process, however many listings find the key, naming the
// key and what is wrong with it, and keys
// that are simply not ours (another trust domain, another naming) or are
// well formed are not warned about.
func TestOddKeyWarnings(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const u = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	td := func(serverID ...string) map[string]string {
		tags := map[string]string{tagTrustDomain: testTD}
		if len(serverID) > 0 {
			tags[tagServerID] = serverID[0]
		}
		return tags
	}
	keys := []struct {
		name    string
		tags    map[string]string
		problem string // "" when no warning is due
	}{
		{name: "spire-key-" + u + "-x509-CA-A", tags: td(), problem: "no spire-server-id tag"},
		{name: "spire-key-" + u + "-x509-CA-B", tags: td(""), problem: "spire-server-id tag is empty"},
		{name: "spire-key-" + u + "-x509-CA-C", tags: td(" server-a "), problem: "surrounding spaces"},
		{name: "spire-key-x509-CA-D", tags: td("server-a"), problem: "does not follow spire-key-<UUID>-<key ID>"},
		{name: "spire-key-" + strings.Repeat("z", 36) + "-x509-CA-E", tags: td("server-a"), problem: "does not hold a UUID"},
		{name: "spire-key-" + u + "-x509-CA-F", tags: map[string]string{tagTrustDomain: testTD, tagServerID: "server-a", tagKeyID: "JWT-Signer-F"}, problem: "spire-key-id tag does not match"},
		// Not warned about: well formed, or not claiming this trust domain.
		{name: "spire-key-" + u + "-JWT-Signer-A", tags: td("server-a")},
		{name: "spire-key-" + u + "-JWT-Signer-B", tags: td("server-b")},
		{name: "spire-key-" + u + "-JWT-Signer-C", tags: map[string]string{tagTrustDomain: "other.org"}},
		{name: "my-own-key", tags: td()},
		{name: "unrelated"},
	}
	for _, k := range keys {
		if _, err := srv.SeedKey(keyvault.DefaultVaultName, keyvault.SeedKey{Name: k.name, Signer: signer, Tags: k.tags}); err != nil {
			t.Fatal(err)
		}
	}

	var logs syncbuf.Buffer
	b, err := testConfig(t, srv, keyvault.DefaultVaultName, nil).open(context.Background(), config.OpenParams{
		TrustDomain: testTD,
		ServerID:    "server-a",
		Logger:      hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: &logs, JSONFormat: true}),
	})
	if err != nil {
		t.Fatal(err)
	}
	gens, err := b.ListGenerations(callCtx(t))
	if err != nil {
		t.Fatalf("ListGenerations: %v", err)
	}
	if len(gens) != 2 {
		t.Errorf("listed %+v, want the two well-formed keys", gens)
	}
	// The next listing (a cleanup pass) warns about none of them again.
	if _, err := b.ListGenerations(callCtx(t)); err != nil {
		t.Fatalf("second ListGenerations: %v", err)
	}

	warned := map[string][]map[string]any{} // key name -> its warning lines
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["@level"] != "warn" {
			continue
		}
		name, _ := m["key"].(string)
		if name == "" {
			t.Errorf("a warning names no key: %s", line)
		}
		warned[name] = append(warned[name], m)
	}
	for _, k := range keys {
		lines := warned[k.name]
		delete(warned, k.name)
		if k.problem == "" {
			if len(lines) != 0 {
				t.Errorf("key %s was warned about: %v", k.name, lines)
			}
			continue
		}
		if len(lines) != 1 {
			t.Errorf("key %s: %d warnings, want 1: %v", k.name, len(lines), lines)
			continue
		}
		msg, _ := lines[0]["@message"].(string)
		problem, _ := lines[0]["problem"].(string)
		if !strings.Contains(msg, "Skipping a key") || !strings.Contains(problem, k.problem) {
			t.Errorf("key %s: warning %v; want it skipped because %q", k.name, lines[0], k.problem)
		}
	}
	if len(warned) != 0 {
		t.Errorf("warnings about keys not in the vault: %v", warned)
	}
}
