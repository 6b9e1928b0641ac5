package gcpkms

import (
	"crypto"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/kmskeeper/kmskeeper/conformance"
	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// capabilities are what Cloud KMS keys created with scheme sign: each key
// one hash and one padding (P-256/SHA-256, P-384/SHA-384, RSA SHA-256 in
// PKCS#1 v1.5 or PSS); every other request is InvalidArgument.
func capabilities(scheme Scheme, types ...engine.KeyType) conformance.Capabilities {
	c := conformance.Capabilities{
		KeyTypes: types,
		Hashes:   map[engine.KeyType][]crypto.Hash{},
		PSS:      map[engine.KeyType][]crypto.Hash{},
		Refused:  map[engine.KeyType][]crypto.Hash{},
	}
	for _, t := range types {
		h := crypto.SHA256
		if t == engine.ECP384 {
			h = crypto.SHA384
		}
		if !t.IsEC() && scheme == SchemePSS {
			c.PSS[t] = []crypto.Hash{h}
		} else {
			c.Hashes[t] = []crypto.Hash{h}
		}
		for _, p := range conformance.ProtocolHashes() {
			if !slices.Contains(c.Hashes[t], p) {
				c.Refused[t] = append(c.Refused[t], p)
			}
		}
	}
	return c
}

// TestConformance runs the conformance suite through the built binary
// against the emulator for software and HSM keys, PKCS#1 and PSS. New
// versions stay PENDING_GENERATION a while (longer for HSM), as on the
// service. RSA-4096, slow to generate, runs in two of the four.
func TestConformance(t *testing.T) {
	all := []engine.KeyType{engine.ECP256, engine.ECP384, engine.RSA2048, engine.RSA4096}
	for _, tt := range []struct {
		name       string
		protection kmspb.ProtectionLevel
		scheme     Scheme
		types      []engine.KeyType
	}{
		{"software pkcs1", kmspb.ProtectionLevel_SOFTWARE, SchemePKCS1, all},
		{"hsm pss", kmspb.ProtectionLevel_HSM, SchemePSS, all},
		{"software pss", kmspb.ProtectionLevel_SOFTWARE, SchemePSS, all[2:3]},
		{"hsm pkcs1", kmspb.ProtectionLevel_HSM, SchemePKCS1, all[:3]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, raw := startEmulator(t, cloudkms.Options{PendingGeneration: 20 * time.Millisecond, PendingGenerationHSM: 200 * time.Millisecond})
			extra := `rsa_signature_scheme = "` + string(tt.scheme) + `"`
			if tt.protection == kmspb.ProtectionLevel_HSM {
				extra += "\nkey_protection = \"hsm\""
			}
			conformance.Run(t, func(t *testing.T) *pluginhost.Plugin {
				return configured(t, srv, "conformance", extra)
			}, capabilities(tt.scheme, tt.types...))

			// Every key made has the protection and scheme asked for.
			it := raw.ListCryptoKeys(callCtx(t), &kmspb.ListCryptoKeysRequest{Parent: testRing})
			for {
				k, err := it.Next()
				if err != nil {
					break
				}
				tmpl := k.GetVersionTemplate()
				a, _ := lookupAlgorithm(tmpl.GetAlgorithm())
				if tmpl.GetProtectionLevel() != tt.protection || (!a.keyType.IsEC() && a.pss != (tt.scheme == SchemePSS)) {
					t.Errorf("key %s is %v %v, want %v %s", k.GetName(), tmpl.GetProtectionLevel(), tmpl.GetAlgorithm(), tt.protection, tt.scheme)
				}
			}
		})
	}
}
