package plugin

import (
	"context"
	"crypto/sha256"
	"net"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
)

// BenchmarkSignDataGRPC measures SignData through the plugin's gRPC server
// as the binary serves it (NewGRPCServer, the services go-plugin registers,
// a Unix socket as go-plugin uses on Linux), with the Metrics host service
// attached, over the engine and an in-memory backend. ns/op and allocs/op
// count both ends of the connection and the in-memory backend's signing;
// the difference between two runs is the serving path's. Compare with
// go test -bench SignDataGRPC -benchmem ./plugin (BENCHMARKS.md).
func BenchmarkSignDataGRPC(b *testing.B) {
	s := newServer([]config.Kind{memory.Kind()}, hclog.NewNullLogger())
	hm := newHostMetrics(startFakeHost(b, &fakeHost{}), hclog.NewNullLogger(), 0)
	s.metrics, s.closeMet = hm, hm.Close
	m, err := engine.New(engine.Options{Backend: memory.NewStore().Backend("example.org", "bench"), ServerID: "bench", Metrics: s.metrics})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Load(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := m.GenerateKey(ctx, "x509-CA-A", engine.ECP256); err != nil {
		b.Fatal(err)
	}
	s.current.Store(&running{manager: m})
	b.Cleanup(s.shutdown)

	gs := NewGRPCServer(nil)
	if err := (&grpcPlugin{server: s}).GRPCServer(nil, gs); err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "plugin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	go gs.Serve(ln)
	b.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	client := keymanagerv1.NewKeyManagerClient(conn)
	d := sha256.Sum256([]byte("bench"))
	req := &keymanagerv1.SignDataRequest{
		KeyId:      "x509-CA-A",
		Data:       d[:],
		SignerOpts: &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm_SHA256},
	}
	if _, err := client.SignData(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := client.SignData(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
