package memory_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
)

func TestFaultsAcrossStores(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.json")
	// Two stores on one file stand for two processes.
	control, err := memory.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := memory.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	b := plugin.Backend("example.org", "server-a")
	ctx := t.Context()

	if err := control.InjectFault(memory.Fault{Op: "Create", Code: codes.Unavailable, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, engine.CreateRequest{KeyID: "x509-CA-A", Type: engine.ECP256, Lease: testLease()}); engine.Code(err) != codes.Unavailable {
		t.Fatalf("Create with an Unavailable fault = %v, want Unavailable", err)
	}
	if gens, _ := b.ListGenerations(ctx); len(gens) != 0 {
		t.Fatalf("a failed Create stored %d generations", len(gens))
	}
	g, err := b.Create(ctx, engine.CreateRequest{KeyID: "x509-CA-A", Type: engine.ECP256, Lease: testLease()})
	if err != nil {
		t.Fatalf("Create once the fault is spent: %v", err)
	}
	if f := control.Faults(); len(f) != 1 || f[0].Hits != 1 {
		t.Fatalf("Faults() = %+v, want one fault with one hit", f)
	}

	// A PhaseAfter fault fails the answer of an operation that took effect.
	if err := control.InjectFault(memory.Fault{Op: "Retire", Phase: memory.PhaseAfter, Code: codes.Internal, Count: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Retire(ctx, g); engine.Code(err) != codes.Internal {
		t.Fatalf("Retire with a PhaseAfter fault = %v, want Internal", err)
	}
	if gens, _ := b.ListGenerations(ctx); len(gens) != 0 {
		t.Fatalf("Retire with a PhaseAfter fault kept %d generations", len(gens))
	}

	// Latency is bounded by the caller's context.
	if err := control.ClearFaults(); err != nil {
		t.Fatal(err)
	}
	if err := control.InjectFault(memory.Fault{Op: "Sign", Latency: time.Hour}); err != nil {
		t.Fatal(err)
	}
	g, err = b.Create(ctx, engine.CreateRequest{KeyID: "x509-CA-B", Type: engine.ECP256, Lease: testLease()})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	d := sha256.Sum256([]byte("x"))
	if _, err := b.Sign(short, g, d[:], crypto.SHA256); engine.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Sign held past its deadline = %v, want DeadlineExceeded", err)
	}
}

func TestAdvance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.json")
	control, err := memory.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := memory.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := control.Advance(30 * 24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	b := plugin.Backend("example.org", "server-a")
	g, err := b.Create(t.Context(), engine.CreateRequest{KeyID: "x509-CA-A", Type: engine.ECP256, Lease: testLease()})
	if err != nil {
		t.Fatal(err)
	}
	if ahead := g.Created.Sub(time.Now()); ahead < 29*24*time.Hour {
		t.Errorf("created %v after the system clock, want about 30 days", ahead)
	}
	if ahead := control.Now().Sub(time.Now()); ahead < 29*24*time.Hour {
		t.Errorf("Now() is %v after the system clock, want about 30 days", ahead)
	}
}

// testLease is the lease of a backend test's process.
func testLease() engine.Lease {
	return engine.Lease{Holder: "testproc", Renewed: time.Now().Truncate(time.Millisecond)}
}
