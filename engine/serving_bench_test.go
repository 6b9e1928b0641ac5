package engine_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"testing"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
)

// BenchmarkSignData is the regression guard of the signing path in
// process: Manager.SignData over the in-memory backend, for each key type
// SPIRE signs with most. Most of ns/op is the memory backend's own signing
// and the engine's verification of every signature; allocs/op beyond the
// memory backend's are the engine's. A change that adds work to the path
// shows here in review:
//
//	go test -run '^$' -bench SignData -benchmem ./engine
func BenchmarkSignData(b *testing.B) {
	for _, t := range []engine.KeyType{engine.ECP256, engine.RSA2048} {
		b.Run(t.String(), func(b *testing.B) {
			ctx := context.Background()
			m, _ := benchManager(b, t)
			d := sha256.Sum256([]byte("bench"))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := m.SignData(ctx, "x509-CA-A", d[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerify is what the engine's verification of every signature
// costs (design rule 6): the standard library's verification on the
// parsed public key the engine keeps.
//
//	go test -run '^$' -bench Verify -benchmem ./engine
func BenchmarkVerify(b *testing.B) {
	for _, t := range []engine.KeyType{engine.ECP256, engine.RSA2048} {
		b.Run(t.String(), func(b *testing.B) {
			ctx := context.Background()
			m, pk := benchManager(b, t)
			pub, err := x509.ParsePKIXPublicKey(pk.PKIX)
			if err != nil {
				b.Fatal(err)
			}
			d := sha256.Sum256([]byte("bench"))
			sig, _, err := m.SignData(ctx, "x509-CA-A", d[:], crypto.SHA256)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := engine.Verify(pub, d[:], sig, crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchManager returns a loaded Manager over the in-memory backend serving
// a key of type t under x509-CA-A, and that key.
func benchManager(b *testing.B, t engine.KeyType) (*engine.Manager, engine.PublicKey) {
	b.Helper()
	m, err := engine.New(engine.Options{Backend: memory.NewStore().Backend("example.org", "bench"), ServerID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		b.Fatal(err)
	}
	pk, err := m.GenerateKey(ctx, "x509-CA-A", t)
	if err != nil {
		b.Fatal(err)
	}
	return m, pk
}
