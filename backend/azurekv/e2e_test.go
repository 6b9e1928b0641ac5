package azurekv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// Workload identity of the end-to-end tests: an AKS cluster's OIDC issuer
// and the SPIRE server's service account.
const (
	wiIssuer  = "https://westeurope.oic.prod-aks.azure.com/6b0c4ef1-7d2a-4c56-9e3f-2a5d8c1b0e01/2f8a9c1e-5b7d-4e3a-9c6f-1d2e3f4a5b6c/"
	wiSubject = "system:serviceaccount:spire:spire-server"
)

// workloadEnv is what the AKS workload identity webhook puts in the pod:
// no secret.
var workloadEnv = []string{"AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_AUTHORITY_HOST"}

// workloadEmulator starts an emulator whose main app trusts wiIssuer's
// tokens about wiSubject, and writes a token about subject to a file that
// the emulator's environment then names; it returns the token.
func workloadEmulator(t *testing.T, subject string) (*keyvault.Server, string) {
	t.Helper()
	srv := startEmulator(t, keyvault.Options{FederatedCredentials: []keyvault.FederatedCredential{{Issuer: wiIssuer, Subject: wiSubject}}})
	file := filepath.Join(t.TempDir(), "azure-identity-token")
	if err := srv.WriteFederatedTokenFile(file, subject); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return srv, string(tok)
}

// TestCredentials configures the built binary with each credential path and
// checks which token endpoint the plugin used.
func TestCredentials(t *testing.T) {
	for _, tt := range []struct {
		name, extra string
		env         []string
		workload    bool   // the main app has a federated credential and a token file
		wantToken   string // the emulator counter that must move
		wantWarning string
	}{
		{name: "client secret in plugin_data", extra: "tenant_id = %q\napp_id = %q\napp_secret = %q\nsubscription_id = \"00000000-0000-0000-0000-000000000000\"\n", env: []string{"AZURE_AUTHORITY_HOST"}, wantToken: "Token"},
		{name: "default chain from the environment", env: []string{"AZURE_"}, wantToken: "Token"},
		{name: "default chain to the managed identity", env: []string{"IDENTITY_", "AZURE_AUTHORITY_HOST"}, wantToken: "ManagedIdentityToken"},
		{name: "default chain to workload identity", env: workloadEnv, workload: true, wantToken: "Token"},
		{name: "use_msi", extra: "use_msi = true\n", env: []string{"IDENTITY_"}, wantToken: "ManagedIdentityToken", wantWarning: "use_msi is deprecated"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				srv       *keyvault.Server
				assertion string
			)
			if tt.workload {
				srv, assertion = workloadEmulator(t, wiSubject)
			} else {
				srv = startEmulator(t, keyvault.Options{})
			}
			extra := tt.extra
			if strings.Contains(extra, "%q") {
				extra = fmt.Sprintf(extra, srv.TenantID(), srv.ClientID(), srv.ClientSecret())
			}
			env := pluginEnv(t, srv, tt.env...)
			if tt.workload && slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "AZURE_CLIENT_SECRET=") }) {
				t.Fatalf("the workload identity environment holds the client secret: %v", env)
			}
			p := configured(t, env, srv.VaultURL(keyvault.DefaultVaultName), "server-a", extra)
			signer := generate(t, p, "x509-CA-A", engine.ECP256)
			digest := sha256.Sum256([]byte("x"))
			if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
				t.Fatalf("Sign: %v", err)
			}
			counts := srv.Counts()
			other := map[string]string{"Token": "ManagedIdentityToken", "ManagedIdentityToken": "Token"}[tt.wantToken]
			if counts[tt.wantToken] == 0 || counts[other] != 0 {
				t.Errorf("token requests %s=%d %s=%d; want only %s", tt.wantToken, counts[tt.wantToken], other, counts[other], tt.wantToken)
			}
			if tt.wantWarning != "" && !hasLog(p, "warn", tt.wantWarning) {
				t.Errorf("no warning %q in the plugin's log", tt.wantWarning)
			}
			for _, l := range p.Logs() {
				if srv.ClientSecret() != "" && strings.Contains(l.Raw, srv.ClientSecret()) {
					t.Errorf("the plugin logged the client secret: %s", l.Raw)
				}
				if assertion != "" && strings.Contains(l.Raw, assertion) {
					t.Errorf("the plugin logged the federated token: %s", l.Raw)
				}
			}
		})
	}
}

// TestWorkloadIdentityRefused gives the plugin a service account token whose
// subject the app's federated credential does not name: Configure fails
// Unauthenticated, naming the app, the token file and Entra's answer, and
// neither the error nor the plugin's log quotes the token.
func TestWorkloadIdentityRefused(t *testing.T) {
	t.Parallel()
	const intruder = "system:serviceaccount:default:intruder"
	srv, assertion := workloadEmulator(t, intruder)
	p := launch(t, pluginEnv(t, srv, workloadEnv...))
	err := p.Configure(spireCtx(t), testTD, pluginData(srv.VaultURL(keyvault.DefaultVaultName), "server-a", ""))
	if err == nil {
		t.Fatal("Configure with a token the app does not trust succeeded")
	}
	if got := status.Code(err); got != codes.Unauthenticated {
		t.Errorf("Configure error code %v, want Unauthenticated: %v", got, err)
	}
	for _, want := range []string{"obtaining a token as app " + srv.ClientID() + " of tenant " + srv.TenantID() + " (workload identity, federated token file ", "AADSTS700213", intruder} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Configure error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), assertion) {
		t.Errorf("the error quotes the federated token: %v", err)
	}
	for _, l := range p.Logs() {
		if strings.Contains(l.Raw, assertion) {
			t.Errorf("the plugin logged the federated token: %s", l.Raw)
		}
	}
}

// generate asks the plugin for a key and returns a crypto.Signer on it.
func generate(t *testing.T, p *pluginhost.Plugin, id string, kt engine.KeyType) crypto.Signer {
	t.Helper()
	if _, err := p.GenerateKey(spireCtx(t), id, kt); err != nil {
		t.Fatalf("GenerateKey(%s): %v", id, err)
	}
	s, err := p.Signer(spireCtx(t), id)
	if err != nil {
		t.Fatalf("Signer(%s): %v", id, err)
	}
	return s
}

func hasLog(p *pluginhost.Plugin, level, contains string) bool {
	for _, l := range p.Logs() {
		if l.Level == level && strings.Contains(l.Message, contains) {
			return true
		}
	}
	return false
}

// builtinKey is a key as SPIRE's built-in azure_key_vault plugin writes it.
type builtinKey struct {
	keyID    string
	serverID string
	td       string
	signer   crypto.Signer
	created  time.Time
	name     string // set by seed
}

// seed puts keys into a vault exactly as the built-in plugin lays them out:
// spire-key-<UUIDv4>-<key ID>, key_ops sign and verify, tags
// spire-server-td and spire-server-id.
func seed(t *testing.T, srv *keyvault.Server, vault string, keys []*builtinKey) {
	t.Helper()
	for _, k := range keys {
		k.name = "spire-key-" + uuid.NewString() + "-" + k.keyID
		var tags map[string]string
		if k.td != "" {
			tags = map[string]string{"spire-server-td": k.td, "spire-server-id": k.serverID}
		}
		if _, err := srv.SeedKey(vault, keyvault.SeedKey{
			Name: k.name, Signer: k.signer, KeyOps: []string{"sign", "verify"}, Tags: tags,
			Created: k.created, Updated: k.created,
		}); err != nil {
			t.Fatalf("seeding %s: %v", k.name, err)
		}
	}
}

func fingerprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Fingerprint(der)
}

// TestAdoptBuiltinKeys seeds keys laid out by SPIRE's built-in plugin,
// including two generations of one key ID left by a crash, and checks that
// the plugin serves them with the same fingerprints, signs with them,
// fetches only the newest generation of each and retires the older one (it
// was superseded long ago, so it has settled).
func TestAdoptBuiltinKeys(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	const serverID = "6f1d7a0e-4d7b-4bde-9d27-3a7f0e0b7c11"
	ec := func() crypto.Signer { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := srv.Clock().Now()
	keys := []*builtinKey{
		{keyID: "x509-CA-A", serverID: serverID, td: testTD, signer: ec(), created: now.Add(-12 * time.Hour)},
		{keyID: "x509-CA-A", serverID: serverID, td: testTD, signer: ec(), created: now.Add(-36 * time.Hour)}, // superseded, delete lost
		{keyID: "JWT-Signer-A", serverID: serverID, td: testTD, signer: ec(), created: now.Add(-time.Hour)},
		{keyID: "x509-CA-B", serverID: serverID, td: testTD, signer: rsaKey, created: now.Add(-2 * time.Hour)},
	}
	seed(t, srv, keyvault.DefaultVaultName, keys)
	srv.ResetCounts()

	p := configured(t, pluginEnv(t, srv, allEnv...), srv.VaultURL(keyvault.DefaultVaultName), serverID, "")
	got, err := p.GetPublicKeys(spireCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, k := range []*builtinKey{keys[0], keys[2], keys[3]} {
		want[k.keyID] = fingerprint(t, k.signer.Public())
	}
	if len(got) != len(want) {
		t.Fatalf("GetPublicKeys = %v, want %d keys", got, len(want))
	}
	for _, pk := range got {
		if want[pk.ID] != pk.Fingerprint {
			t.Errorf("key %s served with fingerprint %s, the built-in plugin's is %s", pk.ID, pk.Fingerprint, want[pk.ID])
		}
	}
	for _, k := range []*builtinKey{keys[0], keys[3]} {
		s, err := p.Signer(spireCtx(t), k.keyID)
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte(k.keyID))
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("Sign with adopted %s: %v", k.keyID, err)
		}
		if err := engine.Verify(k.signer.Public(), digest[:], sig, crypto.SHA256); err != nil {
			t.Errorf("signature of adopted %s does not verify with the seeded key: %v", k.keyID, err)
		}
	}
	// The older x509-CA-A generation is retired in the background.
	waitFor(t, func() bool { return slices.Contains(srv.DeletedKeyNames(keyvault.DefaultVaultName), keys[1].name) })
	if c := srv.Counts(); c["UpdateKey"] != 3 || c["GetKey"] != 1 || c["DeleteKey"] != 1 || c["CreateKey"] != 0 {
		t.Errorf("counts %v: want 3 UpdateKey (the lease on the newest generation of each key ID, whose answer carries the public key), one GetKey and one DeleteKey (the superseded generation, read again just before it is retired) and no CreateKey", c)
	}
	live := srv.KeyNames(keyvault.DefaultVaultName)
	for _, k := range []*builtinKey{keys[0], keys[2], keys[3]} {
		if !slices.Contains(live, k.name) {
			t.Errorf("adopted key %s is gone; live keys %v", k.name, live)
		}
	}
}

// TestStartupManyForeignKeys starts the plugin on a vault holding hundreds of
// keys that are not its own and checks its calls: one listing pass and one
// GetKey per own key, nothing else.
func TestStartupManyForeignKeys(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	shared, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var keys []*builtinKey
	now := srv.Clock().Now()
	for i := range 300 {
		k := &builtinKey{keyID: "x509-CA-A", signer: shared, created: now}
		switch i % 3 {
		case 0: // another trust domain
			k.td, k.serverID = "other.org", "s"
		case 1: // another server of this trust domain
			k.td, k.serverID = testTD, fmt.Sprintf("server-%d", i)
		}
		keys = append(keys, k)
	}
	mine := []*builtinKey{
		{keyID: "x509-CA-A", serverID: "server-a", td: testTD, signer: shared, created: now},
		{keyID: "JWT-Signer-A", serverID: "server-a", td: testTD, signer: shared, created: now},
	}
	seed(t, srv, keyvault.DefaultVaultName, append(keys, mine...))
	srv.ResetCounts()

	start := time.Now()
	p := configured(t, pluginEnv(t, srv, allEnv...), srv.VaultURL(keyvault.DefaultVaultName), "server-a", "")
	t.Logf("Configure with %d keys in the vault took %v", len(keys)+len(mine), time.Since(start))
	got, err := p.GetPublicKeys(spireCtx(t))
	if err != nil || len(got) != 2 {
		t.Fatalf("GetPublicKeys = %v, %v; want the 2 own keys", got, err)
	}
	pages := (len(keys) + len(mine) + 24) / 25
	c := srv.Counts()
	for op, n := range c {
		switch op {
		case "ListKeys":
			if n != pages {
				t.Errorf("ListKeys requests = %d, want %d (one pass over %d keys, 25 per page)", n, pages, len(keys)+len(mine))
			}
		case "UpdateKey":
			if n != len(mine) {
				t.Errorf("UpdateKey requests = %d, want %d (the lease on each own key, whose answer carries its public key)", n, len(mine))
			}
		case "Challenge", "Token":
		default:
			t.Errorf("unexpected %d %s requests at startup", n, op)
		}
	}
	if c["ListKeys"] == 0 {
		t.Errorf("no listing counted: %v", c)
	}
}

// TestTwoServersAndCleanup runs two servers of one trust domain on one vault
// with short liveness and cleanup intervals: each rotates and cleans up
// without touching the other's live keys (a superseded generation is
// retired once it has settled, on the vault's clock); once server B is gone
// and the vault's clock is 15 days later, server A keeps its own keys alive
// and retires B's as stale. Both servers learn the vault's time from its
// answers' Date headers, so moving the emulator's clock moves theirs.
func TestTwoServersAndCleanup(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	env := pluginEnv(t, srv, allEnv...)
	vault := srv.VaultURL(keyvault.DefaultVaultName)
	const fast = "liveness_interval = \"1s\"\ncleanup_interval = \"1s\"\n"
	a := configured(t, env, vault, "server-a", fast)
	b := configured(t, env, vault, "server-b", fast)
	for _, p := range []*pluginhost.Plugin{a, b} {
		generate(t, p, "x509-CA-A", engine.ECP256)
		generate(t, p, "JWT-Signer-A", engine.ECP256)
	}
	generate(t, b, "x509-CA-A", engine.ECP256) // B rotates; B retires its old key once settled
	// B ends its lease on the old key first, a write that starts the settle
	// period again: move the vault's clock past it until B has retired it
	// (twice at most: the write comes right after the rotation).
	retired := func() bool { return len(srv.KeyNames(keyvault.DefaultVaultName)) == 4 }
	for range 2 {
		srv.Clock().Advance(engine.DefaultSettle + time.Minute)
		for end := time.Now().Add(8 * time.Second); !retired() && time.Now().Before(end); {
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(t, retired)
	waitCleanups(t, a, 2)
	waitCleanups(t, b, 2)
	before := srv.KeyNames(keyvault.DefaultVaultName)
	if len(before) != 4 {
		t.Fatalf("after both servers' cleanups the vault holds %v, want the 4 live keys", before)
	}
	owner := ownersOf(t, srv)

	// Server B goes away; 15 days pass in the vault.
	if err := b.Close(); err != nil {
		t.Logf("Close B: %v", err)
	}
	srv.Clock().Advance(15 * 24 * time.Hour)
	// A creates a key on the vault's new day, and its next cleanup pass
	// judges B's keys on it.
	generate(t, a, "JWT-Signer-B", engine.ECP256)
	waitFor(t, func() bool {
		for _, n := range srv.KeyNames(keyvault.DefaultVaultName) {
			if owner[n] == "server-b" {
				return false
			}
		}
		return true
	})
	live := srv.KeyNames(keyvault.DefaultVaultName)
	for n, o := range owner {
		if o == "server-a" && !slices.Contains(live, n) {
			t.Errorf("server A's key %s was retired", n)
		}
	}
	if !hasLog(a, "info", "Retired key generation") {
		t.Errorf("server A did not log the retirement")
	}
	if srv.Counts()["UpdateKey"] == 0 {
		t.Errorf("server A never kept its keys alive (no UpdateKey) after the clock moved")
	}
}

// ownersOf maps the vault's live key names to their spire-server-id tag.
func ownersOf(t *testing.T, srv *keyvault.Server) map[string]string {
	t.Helper()
	b, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "observer")
	gens, err := b.ListGenerations(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range gens {
		out[g.Ref] = g.ServerID
	}
	return out
}

// waitCleanups waits for n more cleanup passes of p.
func waitCleanups(t *testing.T, p *pluginhost.Plugin, n int) {
	t.Helper()
	seen := 0
	for _, l := range p.Logs() {
		if l.Message == "Cleanup pass done" {
			seen++
		}
	}
	waitFor(t, func() bool {
		c := 0
		for _, l := range p.Logs() {
			if l.Message == "Cleanup pass done" {
				c++
			}
		}
		return c >= seen+n
	})
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
