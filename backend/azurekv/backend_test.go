package azurekv

import (
	"crypto"
	"crypto/sha256"
	"testing"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestLifecycle drives every backend call through the real SDK against the
// emulator: create, list, fetch, sign (verified), keep alive, retire.
func TestLifecycle(t *testing.T) {
	srv := startEmulator(t, keyvault.Options{})
	b, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-a")

	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if g.Version == "" || g.Public == nil || g.Type != engine.ECP256 {
		t.Fatalf("Create returned %+v", g)
	}
	gens, err := b.ListGenerations(callCtx(t))
	if err != nil {
		t.Fatalf("ListGenerations: %v", err)
	}
	if len(gens) != 1 || gens[0].Ref != g.Ref || gens[0].KeyID != "x509-CA-A" || gens[0].ServerID != "server-a" {
		t.Fatalf("ListGenerations = %+v, want the created key", gens)
	}
	f, err := b.Fetch(callCtx(t), gens[0])
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if f.Version != g.Version {
		t.Fatalf("Fetch version %s, want %s", f.Version, g.Version)
	}
	digest := sha256.Sum256([]byte("hello"))
	sig, err := b.Sign(callCtx(t), f, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := engine.Verify(f.Public, digest[:], sig, crypto.SHA256); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	srv.Clock().Advance(48 * 3600e9)
	k, err := b.KeepAlive(callCtx(t), f)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	if !k.Updated.After(f.Updated) {
		t.Fatalf("KeepAlive did not move Updated: %v -> %v", f.Updated, k.Updated)
	}
	if err := b.Retire(callCtx(t), f); err != nil {
		t.Fatalf("Retire: %v", err)
	}
	if err := b.Retire(callCtx(t), f); err != nil {
		t.Fatalf("Retire twice: %v", err)
	}
	if names := srv.KeyNames(keyvault.DefaultVaultName); len(names) != 0 {
		t.Fatalf("keys left: %v", names)
	}
}
