package azurekv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestLivenessCalls runs the engine's liveness pass over an adopted key and a
// created one, two days later on the vault's clock: each costs one GetKey
// (the leases other processes may have written since) and one UpdateKey, as
// the built-in plugin's does, and a pass with every key fresh costs no call.
func TestLivenessCalls(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := srv.Clock().Now()
	adopted := keyName("x509-CA-A")
	if _, err := srv.SeedKey(keyvault.DefaultVaultName, keyvault.SeedKey{
		Name: adopted, Signer: signer, KeyOps: []string{"sign", "verify"},
		Tags:    map[string]string{tagTrustDomain: testTD, tagServerID: "server-a"},
		Created: now.Add(-time.Hour), Updated: now.Add(-time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	b, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-a")
	m, err := engine.New(engine.Options{Backend: b, ServerID: "server-a", Clock: emuClock{srv.Clock()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if err := m.Load(callCtx(t)); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if _, err := m.GenerateKey(callCtx(t), "JWT-Signer-A", engine.ECP256); err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}

	pass := func(wantUpdates int) {
		t.Helper()
		srv.ResetCounts()
		if err := m.KeepAlive(callCtx(t)); err != nil {
			t.Fatalf("liveness pass: %v", err)
		}
		for op, n := range srv.Counts() {
			switch op {
			case "UpdateKey", "GetKey", "Challenge", "Token": // the SDK's authentication
			default:
				t.Errorf("liveness pass: %d %s requests, want none", n, op)
			}
		}
		if c := srv.Counts(); c["UpdateKey"] != wantUpdates || c["GetKey"] != wantUpdates {
			t.Errorf("liveness pass: %d GetKey and %d UpdateKey, want %d of each", c["GetKey"], c["UpdateKey"], wantUpdates)
		}
	}
	pass(0) // both keys fresh
	srv.Clock().Advance(2 * 24 * time.Hour)
	pass(2) // both due: one GetKey and one UpdateKey each
	pass(0) // kept alive just now

	gens, err := b.ListGenerations(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gens {
		if age := srv.Clock().Now().Sub(g.Updated); age > time.Hour {
			t.Errorf("key %s was updated %v ago on the vault's clock; the liveness pass did not reach it", g.Ref, age)
		}
	}
}

// emuClock drives the engine with the emulator's clock, so that moving the
// emulator days ahead moves the engine too.
type emuClock struct{ c *keyvault.Clock }

func (c emuClock) Now() time.Time                         { return c.c.Now() }
func (c emuClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
