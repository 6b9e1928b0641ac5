package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
)

// TestOperatorAzure runs validate, keys list and gc against the Key Vault
// emulator: azkeys and azidentity over TLS, a client-secret credential in
// plugin_data, RBAC checks per app registration. One emulator serves every
// scenario, each in a vault of its own (stopping an emulator takes a
// second: HTTP/2's graceful shutdown).
func TestOperatorAzure(t *testing.T) {
	testOperatorCommands(t, startAzureOperatorEmulator(t, opClouds))
}

// azureApps are the app registrations of the identities, with the key
// permissions (data actions) each is granted; the full-access app is the
// emulator's default one, which Roles leaves unrestricted.
var azureApps = map[identity]struct {
	id, secret string
	perms      []string
}{
	cannotList:   {"3c1f0a9e-0b1d-4e8a-9f10-000000000001", "no-list-secret", []string{"keys/get", "keys/create", "keys/sign", "keys/verify", "keys/update", "keys/delete"}},
	cannotSign:   {"3c1f0a9e-0b1d-4e8a-9f10-000000000002", "no-sign-secret", []string{"keys/list", "keys/get", "keys/create", "keys/verify", "keys/update", "keys/delete"}},
	cannotCreate: {"3c1f0a9e-0b1d-4e8a-9f10-000000000003", "no-create-secret", []string{"keys/list", "keys/get", "keys/sign", "keys/verify", "keys/update", "keys/delete"}},
}

// azureOperatorCloud is one Premium vault of a Key Vault emulator.
type azureOperatorCloud struct {
	srv   *keyvault.Server
	vault string
}

// startAzureOperatorEmulator starts an emulator with vaults empty vaults
// from a copy of azureTemplate (so that its certificate is trusted), points
// azidentity at its Entra endpoint, and returns the vaults.
func startAzureOperatorEmulator(t *testing.T, vaults int) []operatorCloud {
	t.Helper()
	template, err := os.ReadFile(azureTemplate)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, filepath.Base(azureTemplate)), template, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := keyvault.Options{DataDir: data, ExtraClients: map[string]string{}, Roles: map[string][]string{}}
	for i := range vaults {
		opts.Vaults = append(opts.Vaults, keyvault.VaultSpec{Name: fmt.Sprintf("operator-%02d", i)})
	}
	for _, app := range azureApps {
		opts.ExtraClients[app.id] = app.secret
		opts.Roles[app.id] = app.perms
	}
	srv, err := keyvault.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting the Key Vault emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	t.Setenv("AZURE_AUTHORITY_HOST", srv.AuthorityHost())
	var out []operatorCloud
	for _, v := range opts.Vaults {
		out = append(out, &azureOperatorCloud{srv: srv, vault: v.Name})
	}
	return out
}

func (c *azureOperatorCloud) config(t *testing.T, id identity) string {
	app, secret := c.srv.ClientID(), c.srv.ClientSecret()
	if a, ok := azureApps[id]; ok {
		app, secret = a.id, a.secret
	}
	data := fmt.Sprintf(`key_vault_uri = %q
            tenant_id = %q
            app_id = %q
            app_secret = %q
            key_identifier_value = %q
            key_tags = { owner = "platform-security" }`,
		c.srv.VaultURL(c.vault), c.srv.TenantID(), app, secret, opServerID)
	return writeServerConf(t, "azure_key_vault", data, false)
}

func (c *azureOperatorCloud) denied(id identity) []string {
	switch id {
	case cannotList:
		return []string{"ListKeys", "may not list keys", `"Key Vault Crypto Officer" role`, `"list" key permission`}
	case cannotSign:
		return []string{"sign: ", "may not sign keys", `"Key Vault Crypto User (or Crypto Officer)" role`, `"sign" key permission`}
	case cannotCreate:
		return []string{"create: ", "may not create keys", `"Key Vault Crypto Officer" role`, `"create" key permission`}
	}
	return nil
}

func (c *azureOperatorCloud) breakSign(t *testing.T, f signFault) string {
	switch f {
	case signRefused:
		// As if someone deleted the key between its creation and the
		// signature; 404 is not retried.
		c.srv.InjectFault(keyvault.Fault{Vault: c.vault, Op: "Sign", Status: 404, Code: "KeyNotFound", Message: "A key with (name/id) was not found in this key vault (injected)."})
		return "sign: " + c.srv.VaultURL(c.vault)
	case signDamaged:
		c.srv.InjectFault(keyvault.Fault{Vault: c.vault, Op: "Sign", Malform: keyvault.MalformSignatureKey})
		return "does not verify"
	}
	t.Fatalf("unknown sign fault %d", f)
	return ""
}

func (c *azureOperatorCloud) breakList(*testing.T) string {
	c.srv.InjectFault(keyvault.Fault{Vault: c.vault, Op: "ListKeys", Status: 503})
	return "503"
}

func (c *azureOperatorCloud) seed(t *testing.T, k seededKey) []string {
	t.Helper()
	var refs []string
	for _, created := range k.created {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		name := "spire-key-" + uuid.NewString() + "-" + k.keyID
		updated := k.updated
		if updated.Before(created) {
			updated = created
		}
		if _, err := c.srv.SeedKey(c.vault, keyvault.SeedKey{
			Name: name, Signer: key, KeyOps: []string{"sign", "verify"},
			Tags:    map[string]string{"spire-server-td": k.trustDomain, "spire-server-id": k.serverID},
			Created: created, Updated: updated,
		}); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, name)
	}
	return refs
}

func (c *azureOperatorCloud) seedUnrelated(t *testing.T, created time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const name = "payments-signing-key"
	if _, err := c.srv.SeedKey(c.vault, keyvault.SeedKey{Name: name, Signer: key, Created: created}); err != nil {
		t.Fatal(err)
	}
	return name
}

// state is every key of the vault by name: live, or retired when it is
// soft-deleted.
func (c *azureOperatorCloud) state(*testing.T) map[string]string {
	out := map[string]string{}
	for _, n := range c.srv.KeyNames(c.vault) {
		out[n] = stateLive
	}
	for _, n := range c.srv.DeletedKeyNames(c.vault) {
		out[n] = stateRetired
	}
	return out
}

func (c *azureOperatorCloud) retired(state map[string]string, ref string) bool {
	return state[ref] == stateRetired
}

func (c *azureOperatorCloud) advance(d time.Duration) { c.srv.Clock().Advance(d) }
