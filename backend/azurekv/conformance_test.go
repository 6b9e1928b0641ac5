package azurekv

import (
	"crypto"
	"slices"
	"strings"
	"testing"

	"github.com/kmskeeper/kmskeeper/conformance"
	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// capabilities are what Key Vault signs: P-256 with SHA-256, P-384 with
// SHA-384, RSA with SHA-256/384/512 in PKCS#1 v1.5 and PSS. Every other
// protocol hash is refused with InvalidArgument.
func capabilities(types ...engine.KeyType) conformance.Capabilities {
	rsaHashes := []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}
	c := conformance.Capabilities{
		KeyTypes: types,
		Hashes:   map[engine.KeyType][]crypto.Hash{},
		PSS:      map[engine.KeyType][]crypto.Hash{},
		Refused:  map[engine.KeyType][]crypto.Hash{},
	}
	for _, t := range types {
		switch t {
		case engine.ECP256:
			c.Hashes[t] = []crypto.Hash{crypto.SHA256}
		case engine.ECP384:
			c.Hashes[t] = []crypto.Hash{crypto.SHA384}
		default:
			c.Hashes[t] = rsaHashes
			c.PSS[t] = rsaHashes
		}
		for _, h := range conformance.ProtocolHashes() {
			if !slices.Contains(c.Hashes[t], h) {
				c.Refused[t] = append(c.Refused[t], h)
			}
		}
	}
	return c
}

// TestConformance runs the conformance suite through the built binary on a
// Premium vault with software and HSM keys and on a Managed HSM. RSA-4096,
// slow to generate, runs once.
func TestConformance(t *testing.T) {
	all := []engine.KeyType{engine.ECP256, engine.ECP384, engine.RSA2048, engine.RSA4096}
	noBigRSA := all[:3]
	for _, tt := range []struct {
		name, vault, extra string
		types              []engine.KeyType
	}{
		{"vault software", "vault", "", all},
		{"vault hsm", "vault", `key_protection = "hsm"`, noBigRSA},
		{"managed hsm", "mhsm", "", noBigRSA},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startEmulator(t, keyvault.Options{Vaults: []keyvault.VaultSpec{{Name: "vault"}}, ManagedHSMs: []string{"mhsm"}})
			conformance.Run(t, func(t *testing.T) *pluginhost.Plugin {
				return configured(t, pluginEnv(t, srv, allEnv...), srv.VaultURL(tt.vault), "conformance", tt.extra)
			}, capabilities(tt.types...))
			// Every key left in the vault has the protection asked for.
			wantHSM := tt.extra != "" || tt.vault == "mhsm"
			for _, name := range srv.KeyNames(tt.vault) {
				if kty := ktyOf(t, srv, tt.vault, name); strings.HasSuffix(kty, "-HSM") != wantHSM {
					t.Errorf("key %s is %s; HSM wanted: %v", name, kty, wantHSM)
				}
			}
		})
	}
}

// ktyOf reads a key's type through the SDK, as an operator would.
func ktyOf(t *testing.T, srv *keyvault.Server, vault, name string) string {
	t.Helper()
	c := testConfig(t, srv, vault, nil)
	b, _ := openBackend(t, c, "reader")
	resp, err := b.client.GetKey(callCtx(t), name, "", nil)
	if err != nil || resp.Key == nil || resp.Key.Kty == nil {
		t.Fatalf("GetKey(%s): %v", name, err)
	}
	return string(*resp.Key.Kty)
}
