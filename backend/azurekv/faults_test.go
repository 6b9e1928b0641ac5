package azurekv

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// created makes one key through b and returns it ready to sign.
func created(t *testing.T, b *Backend, id string, kt engine.KeyType) engine.Generation {
	t.Helper()
	g, err := b.Create(callCtx(t), createReq(id, kt))
	if err != nil {
		t.Fatalf("Create(%s): %v", id, err)
	}
	return g
}

func wantCode(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	if got := engine.Code(err); got != code {
		t.Fatalf("error %v has code %v, want %v", err, got, code)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// TestThrottling checks on the wire that 429s are retried while the budget
// allows, honouring Retry-After, counted in the metrics, and become
// ResourceExhausted naming the vault and operation past the budget. How each
// answer maps, and when the retries stop, is TestErrorMapping's and
// TestRetryDecisions' (no vault).
func TestThrottling(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	b, m := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-a")
	g := created(t, b, "x509-CA-A", engine.ECP256)
	digest := sha256.Sum256([]byte("x"))

	t.Run("Retry-After honoured", func(t *testing.T) {
		srv.InjectFault(keyvault.Fault{Op: "Sign", Status: http.StatusTooManyRequests, RetryAfter: keyvault.Duration(time.Second), Count: 2})
		start := time.Now()
		if _, err := b.Sign(callCtx(t), g, digest[:], crypto.SHA256); err != nil {
			t.Fatalf("Sign after two 429s: %v", err)
		}
		if d := time.Since(start); d < 2*time.Second {
			t.Errorf("Sign took %v: Retry-After of 1s was not honoured twice", d)
		}
		if got := m.get("kmskeeper.azure.throttled"); got != 2 {
			t.Errorf("throttled counter = %v, want 2", got)
		}
	})
	t.Run("dropped connections retried", func(t *testing.T) {
		srv.ClearFaults()
		srv.InjectFault(keyvault.Fault{Op: "Sign", Drop: true, Count: 1})
		if _, err := b.Sign(callCtx(t), g, digest[:], crypto.SHA256); err != nil {
			t.Fatalf("Sign after a dropped connection: %v", err)
		}
	})
	t.Run("throttled past the budget by the emulator's limits", func(t *testing.T) {
		srv.ClearFaults()
		srv.SetThrottling(true)
		defer srv.SetThrottling(false)
		// 20 creates per 10 s on a vault: the 21st waits for the window.
		for i := range 20 {
			if _, err := b.Create(callCtx(t), createReq("k", engine.ECP256)); err != nil {
				t.Fatalf("create %d: %v", i, err)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := b.Create(ctx, createReq("k", engine.ECP256))
		wantCode(t, err, codes.ResourceExhausted, "CreateKey")
	})
}

// TestPermissionDenied checks that a 403 from RBAC names the operation, the
// key and the role that grants it.
func TestPermissionDenied(t *testing.T) {
	const reader = "7c1d2e3f-0000-4000-8000-00000000c0de"
	srv := startEmulator(t, keyvault.Options{
		ExtraClients: map[string]string{reader: "reader-secret"},
		Roles:        map[string][]string{reader: {"keys/get", "keys/list"}},
	})
	admin, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-a")
	g := created(t, admin, "x509-CA-A", engine.ECP256)
	limited, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, func(c *Config) {
		c.AppID, c.AppSecret = reader, "reader-secret"
	}), "server-a")

	_, err := limited.Create(callCtx(t), createReq("x509-CA-B", engine.ECP256))
	wantCode(t, err, codes.PermissionDenied, "CreateKey on key spire-key-", "may not create", "Key Vault Crypto Officer", reader)
	digest := sha256.Sum256([]byte("x"))
	_, err = limited.Sign(callCtx(t), g, digest[:], crypto.SHA256)
	wantCode(t, err, codes.PermissionDenied, "Sign on key "+g.Ref, "Key Vault Crypto User")
	err = limited.Retire(callCtx(t), g)
	wantCode(t, err, codes.PermissionDenied, "DeleteKey on key "+g.Ref, "\"delete\" key permission")
	if strings.Contains(err.Error(), "reader-secret") {
		t.Errorf("the error reveals the secret: %v", err)
	}
	// Listing and fetching are allowed.
	if _, err := limited.ListGenerations(callCtx(t)); err != nil {
		t.Errorf("ListGenerations: %v", err)
	}

	// A wrong secret fails the token request, named, without the secret.
	wrong, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, func(c *Config) { c.AppSecret = "not-the-secret" }), "server-a")
	_, err = wrong.ListGenerations(callCtx(t))
	wantCode(t, err, codes.Unauthenticated, "ListKeys", srv.ClientID())
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Errorf("the error reveals the secret: %v", err)
	}
}

// TestHSMProtection checks HSM keys on a Premium vault and a Managed HSM, and
// the FailedPrecondition naming the fix on a Standard vault.
func TestHSMProtection(t *testing.T) {
	srv := startEmulator(t, keyvault.Options{
		Vaults:      []keyvault.VaultSpec{{Name: "premium", SKU: keyvault.SKUPremium}, {Name: "standard", SKU: keyvault.SKUStandard}},
		ManagedHSMs: []string{"mhsm"},
	})
	hsm := func(c *Config) { c.KeyProtection = "hsm" }
	for _, vault := range []string{"premium", "mhsm"} {
		b, _ := openBackend(t, testConfig(t, srv, vault, hsm), "server-a")
		g := created(t, b, "x509-CA-A", engine.ECP384)
		digest := sha512.Sum384([]byte("x"))
		sig, err := b.Sign(callCtx(t), g, digest[:], crypto.SHA384)
		if err != nil {
			t.Fatalf("%s: Sign: %v", vault, err)
		}
		if err := engine.Verify(g.Public, digest[:], sig, crypto.SHA384); err != nil {
			t.Fatalf("%s: %v", vault, err)
		}
	}
	b, _ := openBackend(t, testConfig(t, srv, "standard", hsm), "server-a")
	_, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	wantCode(t, err, codes.FailedPrecondition, "Premium vault", `key_protection = "software"`)
	// A refusal worded otherwise is TestErrorMapping's.
}

// TestRetirePurge checks that Retire soft-deletes, purges with
// purge_deleted_keys, and explains a vault with purge protection.
func TestRetirePurge(t *testing.T) {
	// Deletion is instant here; TestRetirePurgeLater has the service's delay.
	srv := startEmulator(t, keyvault.Options{Vaults: []keyvault.VaultSpec{{Name: "plain"}, {Name: "protected", PurgeProtection: true}}, DeletionDelay: -1})
	for _, tt := range []struct {
		vault       string
		purge       bool
		wantDeleted bool
		wantCode    codes.Code
	}{
		{"plain", false, true, codes.OK},
		{"plain", true, false, codes.OK},
		{"protected", true, true, codes.FailedPrecondition},
	} {
		b, _ := openBackend(t, testConfig(t, srv, tt.vault, func(c *Config) { c.PurgeDeletedKeys = tt.purge }), "server-a")
		g := created(t, b, "x509-CA-A", engine.ECP256)
		err := b.Retire(callCtx(t), g)
		if engine.Code(err) != tt.wantCode {
			t.Fatalf("%s purge=%v: Retire = %v, want %v", tt.vault, tt.purge, err, tt.wantCode)
		}
		deleted := strings.Contains(strings.Join(srv.DeletedKeyNames(tt.vault), " "), g.Ref)
		if deleted != tt.wantDeleted || strings.Contains(strings.Join(srv.KeyNames(tt.vault), " "), g.Ref) {
			t.Errorf("%s purge=%v: live %v, deleted %v", tt.vault, tt.purge, srv.KeyNames(tt.vault), srv.DeletedKeyNames(tt.vault))
		}
		if err != nil && !strings.Contains(err.Error(), "purge protection") {
			t.Errorf("error %v does not explain purge protection", err)
		}
		// Retiring again (a later cleanup pass) is not an error, except
		// that the purge is still refused on a protected vault.
		if err := b.Retire(callCtx(t), g); engine.Code(err) != tt.wantCode {
			t.Errorf("%s purge=%v: second Retire = %v", tt.vault, tt.purge, err)
		}
		srv.ResetCounts()
	}
}

// TestOddKeysSkipped checks that keys tagged with the trust domain but not
// laid out as SPIRE's, keys of other trust domains and foreign keys are
// skipped without failing the listing; a disabled own key is reported as
// such, fetched as such, and signing with it is a FailedPrecondition.
func TestOddKeysSkipped(t *testing.T) {
	srv := startEmulator(t, keyvault.Options{})
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	seed := func(name string, tags map[string]string, disabled bool) {
		t.Helper()
		if _, err := srv.SeedKey(keyvault.DefaultVaultName, keyvault.SeedKey{Name: name, Signer: signer, Tags: tags, Disabled: disabled}); err != nil {
			t.Fatal(err)
		}
	}
	const u = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"
	seed("spire-key-"+u+"-x509-CA-A", map[string]string{tagTrustDomain: testTD}, false)
	seed("spire-key-"+u+"-JWT-Signer-A", map[string]string{tagTrustDomain: testTD, tagServerID: ""}, false)
	seed("spire-key-"+u+"-x509-CA-B", map[string]string{tagTrustDomain: "other.org", tagServerID: "server-a"}, false)
	seed("unrelated", nil, false)
	seed("spire-key-2b4e28ba-2fa1-41d2-883f-0016d3cca427-JWT-Signer-B", map[string]string{tagTrustDomain: testTD, tagServerID: "server-a"}, true)

	b, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-a")
	gens, err := b.ListGenerations(callCtx(t))
	if err != nil {
		t.Fatalf("ListGenerations: %v", err)
	}
	if len(gens) != 1 || gens[0].KeyID != "JWT-Signer-B" || !gens[0].Disabled {
		t.Fatalf("ListGenerations = %+v, want only the disabled JWT-Signer-B", gens)
	}
	// The vault still gives a disabled key's public half, as the service
	// does: Fetch reports it disabled (the engine then refuses to serve it),
	// and signing with it is a FailedPrecondition.
	g, err := b.Fetch(callCtx(t), gens[0])
	if err != nil || !g.Disabled || g.Public == nil {
		t.Fatalf("Fetch of the disabled key = %+v, %v; want it with its public key, disabled", g, err)
	}
	digest := sha256.Sum256([]byte("x"))
	_, err = b.Sign(callCtx(t), g, digest[:], crypto.SHA256)
	wantCode(t, err, codes.FailedPrecondition, "disabled", gens[0].Ref)
}

// TestCloudHostName reaches the vault by its cloud name
// (https://<vault>.vault.azure.net/) through a dialer that sends it to the
// emulator: the SDK's challenge-resource check stays on, as in Azure.
func TestCloudHostName(t *testing.T) {
	srv := startEmulator(t, keyvault.Options{Listen: "127.0.0.1:0"})
	dialer := &net.Dialer{}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: srv.CertPool()},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if strings.HasSuffix(strings.Split(addr, ":")[0], ".vault.azure.net") {
				addr = srv.Addr()
			}
			return dialer.DialContext(ctx, network, addr)
		},
	}
	c := &Config{KeyVaultURI: srv.HostVaultURL(keyvault.DefaultVaultName), TenantID: srv.TenantID(), AppID: srv.ClientID(), AppSecret: srv.ClientSecret()}
	if err := c.Check(testTD); err != nil {
		t.Fatal(err)
	}
	if c.vault.loopback || c.vault.kind != kindVault {
		t.Fatalf("parsed %+v", c.vault)
	}
	b, _ := openBackend(t, emuConfig{Config: c, net: network{transport: &http.Client{Transport: tr}, authorityHost: srv.AuthorityHost()}}, "server-a")
	g := created(t, b, "x509-CA-A", engine.RSA2048)
	digest := sha256.Sum256([]byte("x"))
	if _, err := b.Sign(callCtx(t), g, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("Sign: %v", err)
	}
}

// TestRetirePurgeLater checks purge_deleted_keys against the service's
// asynchronous soft delete: Retire returns without waiting while the vault
// is still deleting the key, the listings while it is being deleted leave it
// be, and the first listing after the deletion is done purges it, in this
// process or, after a restart, in the next one.
func TestRetirePurgeLater(t *testing.T) {
	srv := startEmulator(t, keyvault.Options{DeletionDelay: time.Hour})
	purge := func(c *Config) { c.PurgeDeletedKeys = true }
	b, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, purge), "server-a")
	deleted := func(ref string) bool { return slices.Contains(srv.DeletedKeyNames(keyvault.DefaultVaultName), ref) }
	list := func(b *Backend) {
		t.Helper()
		if _, err := b.ListGenerations(callCtx(t)); err != nil {
			t.Fatalf("ListGenerations: %v", err)
		}
	}
	for _, restart := range []bool{false, true} {
		g := created(t, b, "x509-CA-A", engine.ECP256)
		if err := b.Retire(callCtx(t), g); err != nil {
			t.Fatalf("Retire while the vault deletes the key: %v", err)
		}
		list(b)
		if !deleted(g.Ref) {
			t.Fatalf("restart=%v: %s was purged while the vault was deleting it", restart, g.Ref)
		}
		if restart {
			b, _ = openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, purge), "server-a")
		}
		srv.Clock().Advance(time.Hour)
		list(b)
		if deleted(g.Ref) {
			t.Errorf("restart=%v: %s still soft-deleted after a listing once the deletion was done", restart, g.Ref)
		}
	}
	// Another server's deleted key is not purged.
	other, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-b")
	g := created(t, other, "x509-CA-A", engine.ECP256)
	if err := other.Retire(callCtx(t), g); err != nil {
		t.Fatal(err)
	}
	srv.Clock().Advance(time.Hour)
	list(b)
	if !deleted(g.Ref) {
		t.Errorf("server B's deleted key %s was purged by server A", g.Ref)
	}
}

// TestPrivateLinkAlias checks that a private endpoint's privatelink alias
// is refused as key_vault_uri with the name to write instead, and why: the
// vault's real challenge names https://vault.azure.net, which the SDK
// refuses for the alias (while TestCloudHostName's usual name passes).
func TestPrivateLinkAlias(t *testing.T) {
	for _, tt := range []struct{ uri, want string }{
		{"https://kmskeeper.privatelink.vaultcore.azure.net/", "https://kmskeeper.vault.azure.net/"},
		{"https://Contoso.PrivateLink.VaultCore.Azure.CN", "https://contoso.vault.azure.cn/"},
		{"https://hsm1.privatelink.managedhsm.azure.net/", "https://hsm1.managedhsm.azure.net/"},
	} {
		c := &Config{KeyVaultURI: tt.uri}
		err := c.Check(testTD)
		if err == nil || !strings.Contains(err.Error(), "write "+tt.want+" instead") || !strings.Contains(err.Error(), "private DNS zone") {
			t.Errorf("Check(%s) = %v, want the usual name %s", tt.uri, err, tt.want)
		}
	}

	const alias = "kmskeeper.privatelink.vaultcore.azure.net"
	srv := startEmulator(t, keyvault.Options{Listen: "127.0.0.1:0", Hostnames: []string{alias}})
	dialer := &net.Dialer{}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: srv.CertPool()},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, srv.Addr())
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	o := azcore.ClientOptions{Transport: &http.Client{Transport: tr}, Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: srv.AuthorityHost()}}
	cred, err := azidentity.NewClientSecretCredential(srv.TenantID(), srv.ClientID(), srv.ClientSecret(), &azidentity.ClientSecretCredentialOptions{ClientOptions: o, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	client, err := azkeys.NewClient("https://"+alias+"/", cred, &azkeys.ClientOptions{ClientOptions: o})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.GetKey(callCtx(t), "any", "", nil)
	t.Logf("through the alias: %v", err)
	if err == nil || !strings.Contains(err.Error(), "challenge resource") {
		t.Errorf("GetKey through the privatelink alias = %v, want the SDK's refusal of the challenge resource", err)
	}
}

// TestListingOverEmptyPages checks that the listing follows the service's
// pages to the end: soft-deleted names before this server's keys make the
// first page empty, with a nextLink.
func TestListingOverEmptyPages(t *testing.T) {
	srv := startEmulator(t, keyvault.Options{DeletionDelay: -1})
	deleteNamesFirst(t, srv)
	b, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-a")
	want := []string{created(t, b, "x509-CA-A", engine.ECP256).Ref, created(t, b, "JWT-Signer-A", engine.ECP256).Ref}
	gens, err := b.ListGenerations(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range gens {
		got = append(got, g.Ref)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
}
