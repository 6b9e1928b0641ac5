package reliability

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/google/uuid"
	"google.golang.org/api/iterator"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// switchServer is the server ID of the switching scenario.
const switchServer = "switch-back"

// switchKeys are the key IDs SPIRE asks for in the scenario, of the types
// its CA and JWT keys take. JWT-Signer-B is the built-in plugin's key,
// adopted by kmskeeper and never rotated while it runs.
var switchKeys = []migratedKey{
	{"x509-CA-A", engine.ECP256},
	{"JWT-Signer-A", engine.RSA2048},
	{"x509-CA-B", engine.ECP384},
}

// TestSwitchBackToBuiltIn checks, on each cloud emulator through the built
// binary, the precondition of docs/migration.md's "Switching back": the
// keys kmskeeper serves are keys SPIRE's built-in azure_key_vault or gcp_kms
// plugin adopts, with the public keys SPIRE's journal holds, both while
// kmskeeper runs (its lease tags or labels on them) and after it stopped.
//
// The server starts on a key the built-in plugin made (the switch to
// kmskeeper), creates and rotates keys of every type SPIRE uses, keeps them
// alive a day later on the cloud's clock, and retires the superseded
// generations once they settled. The built-in's rules are the test's own,
// from shared/spec/compatibility.md, applied to what the cloud holds: no
// code of kmskeeper's decides what the built-in would adopt.
func TestSwitchBackToBuiltIn(t *testing.T) {
	forSetups(t, cloudSetups(), func(t *testing.T, s setup) {
		h := newHarness(t, s)
		adopt := builtinAdoption(t, h.v)

		// The built-in plugin's key, as it wrote it.
		now := h.v.now(t)
		builtin := h.v.seed(t, switchServer, "JWT-Signer-B", now.Add(-time.Hour), now.Add(-time.Hour))
		p := h.start(switchServer, "liveness_interval = \"1s\"\ncleanup_interval = \"1s\"")
		if served := h.mustSignAll(p); len(served) != 1 || served[0].Fingerprint != builtin.Fingerprint {
			t.Fatalf("kmskeeper serves %v after the switch, want the built-in's key %s", served, builtin.Fingerprint)
		}

		// Keys kmskeeper creates, each rotated once: the first generation
		// is superseded.
		var superseded []engine.PublicKey
		for _, k := range switchKeys {
			for i := range 2 {
				pk, err := p.GenerateKey(callCtx(t), k.id, k.t)
				if err != nil {
					t.Fatalf("GenerateKey %s (%s): %v", k.id, k.t, h.record(err))
				}
				if i == 0 {
					superseded = append(superseded, pk)
				}
			}
		}

		// A day later on the cloud's clock the liveness pass keeps every
		// key in use alive (the adopted one included), writing its lease
		// tags or labels; the superseded generations have settled by then
		// and the cleanup pass retires them.
		h.v.advance(t, engine.DefaultKeepAliveAge+time.Minute)
		kept := h.v.now(t).Add(-time.Minute)
		waitPasses(t, p, livenessDone, countLogs(p, livenessDone), 2)
		advanceAndClean(t, h, settlePast, p)
		for _, pk := range superseded {
			mustBeGone(t, h, switchServer, pk, "a superseded generation outlived its settle period; the built-in would pick one of the two at random")
		}
		served := h.mustSignAll(p)
		want := map[string]string{}
		for _, pk := range served {
			want[pk.ID] = pk.Fingerprint
		}
		if len(want) != len(switchKeys)+1 {
			t.Fatalf("kmskeeper serves %v, want %d key IDs", served, len(switchKeys)+1)
		}
		for _, k := range own(h.v.keys(t), switchServer) {
			if k.Updated.Before(kept) {
				t.Errorf("%s (%s) was last updated at %s, before the keep-alive at %s: the liveness pass did not write it", k.KeyID, k.Ref, k.Updated, kept)
			}
			if len(committedLeases(k)) == 0 {
				t.Errorf("%s (%s) carries no serving lease while kmskeeper serves it: the scenario does not test the extra tags or labels", k.KeyID, k.Ref)
			}
		}
		checkAdopted(t, "while kmskeeper runs", adopt(t, switchServer), want)

		// SPIRE stops kmskeeper to start the built-in plugin.
		if err := p.Close(); err != nil {
			t.Fatalf("stopping the plugin: %v", err)
		}
		checkAdopted(t, "after kmskeeper stopped", adopt(t, switchServer), want)
	})
}

// checkAdopted compares what the built-in plugin would serve (key ID to
// fingerprint, or the reasons it would refuse to start) with what kmskeeper
// served.
func checkAdopted(t *testing.T, when string, got adoption, want map[string]string) {
	t.Helper()
	for _, p := range got.problems {
		t.Errorf("%s: the built-in plugin would not adopt the keys: %s", when, p)
	}
	for id, fp := range want {
		if got.keys[id] != fp {
			t.Errorf("%s: the built-in plugin would serve %s as %q, kmskeeper serves %s: SPIRE would prepare a new key", when, id, got.keys[id], fp)
		}
	}
	for id := range got.keys {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: the built-in plugin would serve %s, which kmskeeper does not", when, id)
		}
	}
}

// adoption is what the built-in plugin finds at start for one server ID:
// the fingerprint it would serve for each SPIRE key ID, and whatever would
// make its start fail or its choice arbitrary.
type adoption struct {
	keys     map[string]string
	problems []string
}

// builtinAdoption returns the built-in plugin's start-up reading of v's
// cloud.
func builtinAdoption(t *testing.T, v vault) func(t *testing.T, serverID string) adoption {
	switch v := v.(type) {
	case *azureVault:
		return v.builtinAdoption
	case *gcpVault:
		return v.builtinAdoption
	}
	t.Fatalf("no built-in plugin reads a %T", v)
	return nil
}

// builtinAdoption reads the vault as SPIRE's azure_key_vault does at start
// (compatibility.md): every key of the vault whose spire-server-td tag is the
// trust domain and whose spire-server-id tag is serverID, the SPIRE key ID
// read at a fixed offset of its name spire-key-<UUID>-<key ID>, of key type
// EC or RSA. A disabled key fails its start; two keys of one key ID make its
// choice arbitrary. Tags it does not know are ignored.
func (v *azureVault) builtinAdoption(t *testing.T, serverID string) adoption {
	t.Helper()
	a := adoption{keys: map[string]string{}}
	const prefix = "spire-key-"
	for _, k := range v.state(t).Vaults[keyvault.DefaultVaultName].Keys {
		kv := k.Versions[k.Latest]
		if kv == nil || kv.Tags["spire-server-td"] != trustDomain || kv.Tags["spire-server-id"] != serverID {
			continue
		}
		// The built-in cuts the key ID at len("spire-key") + 38: the
		// prefix, a 36-character UUID and a hyphen.
		offset := len("spire-key") + 38
		if !strings.HasPrefix(k.Name, prefix) || len(k.Name) <= offset || k.Name[offset-1] != '-' || uuid.Validate(k.Name[len(prefix):offset-1]) != nil {
			a.problems = append(a.problems, fmt.Sprintf("key %s is not named spire-key-<UUID>-<key ID>", k.Name))
			continue
		}
		if !kv.Enabled {
			a.problems = append(a.problems, fmt.Sprintf("key %s is disabled: the built-in's start fails", k.Name))
		}
		pub, err := azurePublic(kv.PKCS8)
		if err != nil {
			a.problems = append(a.problems, fmt.Sprintf("key %s: %v", k.Name, err))
			continue
		}
		id := k.Name[offset:]
		if _, dup := a.keys[id]; dup {
			a.problems = append(a.problems, fmt.Sprintf("key ID %s has two keys: the built-in serves either", id))
		}
		a.keys[id] = fingerprint(t, pub)
	}
	return a
}

// azurePublic returns the public key of an emulator key's material, which
// must be one of the key types (EC P-256 or P-384, RSA 2048 or 4096) the
// built-in plugin reads.
func azurePublic(pkcs8 []byte) (crypto.PublicKey, error) {
	priv, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		return nil, err
	}
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return k.Public(), nil
		}
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n == 2048 || n == 4096 {
			return k.Public(), nil
		}
	}
	return nil, fmt.Errorf("a %T is no key type the built-in plugin serves", priv)
}

// builtinAlgorithms are the only algorithms SPIRE's gcp_kms signs with.
var builtinAlgorithms = []kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm{
	kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256,
	kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384,
	kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256,
	kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_4096_SHA256,
}

// builtinAdoption reads the key ring as SPIRE's gcp_kms does at start
// (compatibility.md): ListCryptoKeys with its label filter (trust domain
// hash, server ID, spire-active = true), the SPIRE key ID from the CryptoKey
// ID spire-key-<server ID>-<key ID>, and the enabled versions of each,
// signing with one of its four algorithms. Several enabled versions make its
// choice arbitrary. It also needs spire-last-update to be a number: its
// cleanup filters on it, and a key without it is never judged stale by a
// built-in peer. Labels it does not know are ignored.
func (v *gcpVault) builtinAdoption(t *testing.T, serverID string) adoption {
	t.Helper()
	ctx := t.Context()
	a := adoption{keys: map[string]string{}}
	filter := fmt.Sprintf("labels.spire-server-td = %s AND labels.spire-server-id = %s AND labels.spire-active = true", gcpTrustDomainLabel(), serverID)
	it := v.admin.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: gcpKeyRing, Filter: filter})
	prefix := gcpKeyRing + "/cryptoKeys/spire-key-" + serverID + "-"
	for {
		ck, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("listing the key ring with the built-in's filter: %v", err)
		}
		id, ok := strings.CutPrefix(ck.GetName(), prefix)
		if !ok || id == "" {
			a.problems = append(a.problems, fmt.Sprintf("CryptoKey %s is not named spire-key-<server ID>-<key ID>", ck.GetName()))
			continue
		}
		if ck.GetPurpose() != kmspb.CryptoKey_ASYMMETRIC_SIGN {
			a.problems = append(a.problems, fmt.Sprintf("CryptoKey %s has purpose %s", ck.GetName(), ck.GetPurpose()))
		}
		if _, err := strconv.ParseInt(ck.GetLabels()["spire-last-update"], 10, 64); err != nil {
			a.problems = append(a.problems, fmt.Sprintf("CryptoKey %s has no spire-last-update number: built-in peers never retire it", ck.GetName()))
		}
		vit := v.admin.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: ck.GetName(), Filter: "state = ENABLED"})
		var enabled []*kmspb.CryptoKeyVersion
		for {
			ver, err := vit.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				t.Fatalf("listing the versions of %s: %v", ck.GetName(), err)
			}
			enabled = append(enabled, ver)
		}
		if len(enabled) != 1 {
			a.problems = append(a.problems, fmt.Sprintf("CryptoKey %s has %d enabled versions, want 1: the built-in serves any of them", ck.GetName(), len(enabled)))
			if len(enabled) == 0 {
				continue
			}
		}
		ver := enabled[0]
		if !slices.Contains(builtinAlgorithms, ver.GetAlgorithm()) {
			a.problems = append(a.problems, fmt.Sprintf("version %s signs with %s, which the built-in does not", ver.GetName(), ver.GetAlgorithm()))
		}
		pk, err := v.admin.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: ver.GetName()})
		if err != nil {
			t.Fatalf("public key of %s: %v", ver.GetName(), err)
		}
		block, _ := pem.Decode([]byte(pk.GetPem()))
		if block == nil {
			t.Fatalf("public key of %s: no PEM", ver.GetName())
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Fatalf("public key of %s: %v", ver.GetName(), err)
		}
		a.keys[id] = fingerprint(t, pub)
	}
	return a
}
