package azurekv

import (
	"slices"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestCreatedKeyOps reads the keys the plugin creates back through the
// plain SDK: they carry exactly the operations SPIRE needs (sign, verify),
// whatever the key type and protection, and keeping a key alive leaves them
// so. The vault's defaults would allow more (RSA: encrypt, decrypt, wrapKey,
// unwrapKey).
func TestCreatedKeyOps(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{
		Vaults:      []keyvault.VaultSpec{{Name: "premium", SKU: keyvault.SKUPremium}},
		ManagedHSMs: []string{"mhsm"},
	})
	for _, tt := range []struct {
		vault, protection string
		keyType           engine.KeyType
		kty               azkeys.KeyType
	}{
		{"premium", "software", engine.ECP256, azkeys.KeyTypeEC},
		{"premium", "software", engine.ECP384, azkeys.KeyTypeEC},
		{"premium", "software", engine.RSA2048, azkeys.KeyTypeRSA},
		{"premium", "hsm", engine.ECP256, azkeys.KeyTypeECHSM},
		{"premium", "hsm", engine.RSA2048, azkeys.KeyTypeRSAHSM},
		{"mhsm", "hsm", engine.RSA2048, azkeys.KeyTypeRSAHSM},
	} {
		t.Run(tt.vault+"/"+tt.protection+"/"+tt.keyType.String(), func(t *testing.T) {
			b, _ := openBackend(t, testConfig(t, srv, tt.vault, func(c *Config) { c.KeyProtection = tt.protection }), "server-a")
			g := created(t, b, "x509-CA-A", tt.keyType)
			raw := rawClient(t, srv, tt.vault)
			check := func(when string) {
				t.Helper()
				resp, err := raw.GetKey(callCtx(t), g.Ref, "", nil)
				if err != nil {
					t.Fatalf("%s: GetKey: %v", when, err)
				}
				var ops []string
				for _, op := range resp.Key.KeyOps {
					ops = append(ops, string(*op))
				}
				slices.Sort(ops)
				if !slices.Equal(ops, []string{"sign", "verify"}) {
					t.Errorf("%s: key_ops of %s = %v, want exactly sign and verify", when, g.Ref, ops)
				}
				if kty := resp.Key.Kty; kty == nil || *kty != tt.kty {
					t.Errorf("%s: kty of %s = %v, want %s", when, g.Ref, deref(kty), tt.kty)
				}
			}
			check("created")
			srv.Clock().Advance(time.Second)
			if _, err := b.KeepAlive(callCtx(t), g); err != nil {
				t.Fatalf("KeepAlive: %v", err)
			}
			check("kept alive")
		})
	}
}

// rawClient is an azkeys client on vault that shares nothing with the
// backend's: the SDK as its authors ship it, trusting the emulator's CA and
// authority.
func rawClient(t *testing.T, srv *keyvault.Server, vault string) *azkeys.Client {
	t.Helper()
	c, err := srv.KeysClient(srv.VaultURL(vault))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
