package cloudkms

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const testRing = "projects/p/locations/global/keyRings/r"

// startTest starts an emulator with a manual clock and returns it and a
// client built from its ClientOptions.
func startTest(t *testing.T, opts Options) (*Server, *kms.KeyManagementClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if opts.Clock == nil {
		opts.Clock = NewManualClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	}
	if opts.KeyRings == nil {
		opts.KeyRings = []string{testRing}
	}
	opts.Logf = t.Logf
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := kms.NewKeyManagementClient(ctx, s.ClientOptions()...)
	if err != nil {
		t.Fatalf("NewKeyManagementClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

// wantCode fails the test unless err has gRPC code c and (if msg is not
// empty) a message containing msg.
func wantCode(t *testing.T, err error, c codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != c || !strings.Contains(st.Message(), msg) {
		t.Fatalf("err = %v, want code %v with message containing %q", err, c, msg)
	}
}

// createKey creates an ASYMMETRIC_SIGN key in testRing.
func createKey(t *testing.T, c *kms.KeyManagementClient, id string, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm, labels map[string]string) *kmspb.CryptoKey {
	t.Helper()
	k, err := c.CreateCryptoKey(context.Background(), &kmspb.CreateCryptoKeyRequest{
		Parent: testRing, CryptoKeyId: id,
		CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN, Labels: labels,
			VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: alg}},
	})
	if err != nil {
		t.Fatalf("CreateCryptoKey %s: %v", id, err)
	}
	return k
}

// parsePublicKey checks the GetPublicKey answer's CRC and parses the PEM.
func parsePublicKey(t *testing.T, pk *kmspb.PublicKey) crypto.PublicKey {
	t.Helper()
	if got := crc32c([]byte(pk.GetPem())); got != pk.GetPemCrc32C().GetValue() {
		t.Fatalf("pem_crc32c = %d, want %d", pk.GetPemCrc32C().GetValue(), got)
	}
	b, _ := pem.Decode([]byte(pk.GetPem()))
	if b == nil || b.Type != "PUBLIC KEY" {
		t.Fatalf("GetPublicKey PEM is not a PUBLIC KEY block: %q", pk.GetPem())
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatalf("parse public key: %v", err)
	}
	return pub
}

// clientFor returns a new anonymous client of s.
func clientFor(t *testing.T, s *Server) (context.Context, *kms.KeyManagementClient) {
	t.Helper()
	ctx := context.Background()
	c, err := kms.NewKeyManagementClient(ctx, s.ClientOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ctx, c
}
