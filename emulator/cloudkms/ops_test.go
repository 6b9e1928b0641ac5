package cloudkms

import (
	"context"
	"crypto"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestFaults(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)

	// UNAVAILABLE is retried by the official client: two faults, one success.
	s.ResetCounts()
	s.InjectFault(Fault{Method: "GetCryptoKey", Code: codes.Unavailable, Times: 2})
	if _, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()}); err != nil {
		t.Fatalf("GetCryptoKey after 2 UNAVAILABLE: %v", err)
	}
	if n := s.Counts()["GetCryptoKey"]; n != 3 {
		t.Fatalf("GetCryptoKey count = %d, want 3 (2 faults + 1 retry)", n)
	}
	// RESOURCE_EXHAUSTED is not retried by the client.
	s.InjectFault(Fault{Method: "AsymmetricSign", Code: codes.ResourceExhausted, Message: "slow down"})
	_, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: key.GetName() + "/cryptoKeyVersions/1", Digest: digestFor(crypto.SHA256, []byte("x"))})
	wantCode(t, err, codes.ResourceExhausted, "slow down")
	if got := s.Faults(); len(got) != 1 || got[0].Times != 0 {
		t.Fatalf("Faults() = %v", got)
	}
	s.ClearFaults()
	// Latency honours the caller's deadline.
	s.InjectFault(Fault{Latency: time.Minute})
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = c.GetCryptoKey(dctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()})
	if status.Code(err) != codes.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("latency fault: %v", err)
	}
	s.ClearFaults()
	s.InjectFault(Fault{Latency: 50 * time.Millisecond, Times: 1})
	start := time.Now()
	if _, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()}); err != nil || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("latency: %v after %v", err, time.Since(start))
	}
}

func TestQuotas(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	s.SetQuotaLimits(QuotaLimits{WritePerMinute: 2})
	s.SetQuotas(true)
	create := func(id string) error {
		_, err := c.CreateKeyRing(ctx, &kmspb.CreateKeyRingRequest{Parent: "projects/p/locations/global", KeyRingId: id})
		return err
	}
	if err := create("a"); err != nil {
		t.Fatal(err)
	}
	if err := create("b"); err != nil {
		t.Fatal(err)
	}
	err := create("c")
	wantCode(t, err, codes.ResourceExhausted, "Quota exceeded for quota metric 'Write requests'")
	var info *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		if e, ok := d.(*errdetails.ErrorInfo); ok {
			info = e
		}
	}
	if info == nil || info.GetReason() != "RATE_LIMIT_EXCEEDED" || info.GetMetadata()["quota_limit_value"] != "2" {
		t.Fatalf("ErrorInfo = %v", info)
	}
	// Reads have their own budget; the next minute refills writes.
	if _, err := c.GetKeyRing(ctx, &kmspb.GetKeyRingRequest{Name: testRing}); err != nil {
		t.Fatal(err)
	}
	s.Clock().Advance(time.Minute)
	if err := create("c"); err != nil {
		t.Fatal(err)
	}
	s.SetQuotas(false)
	for _, id := range []string{"d", "e", "f"} {
		if err := create(id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	clock := NewManualClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s, c := startTest(t, Options{DataDir: dir, TLS: true, Clock: clock})
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, map[string]string{"a": "b"})
	v1 := key.GetName() + "/cryptoKeyVersions/1"
	pk1, err := c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: v1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateCryptoKeyVersion(ctx, &kmspb.CreateCryptoKeyVersionRequest{Parent: key.GetName(), CryptoKeyVersion: &kmspb.CryptoKeyVersion{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DestroyCryptoKeyVersion(ctx, &kmspb.DestroyCryptoKeyVersionRequest{Name: key.GetName() + "/cryptoKeyVersions/2"}); err != nil {
		t.Fatal(err)
	}
	ca := s.CAPEM()
	s.Close()

	s2, c2 := startTest(t, Options{DataDir: dir, TLS: true, Clock: clock})
	if string(s2.CAPEM()) != string(ca) {
		t.Fatal("CA changed across restarts")
	}
	pk, err := c2.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: v1})
	if err != nil || pk.GetPem() != pk1.GetPem() {
		t.Fatalf("public key after restart: %v", err)
	}
	if _, err := c2.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: v1, Digest: digestFor(crypto.SHA256, []byte("x"))}); err != nil {
		t.Fatal(err)
	}
	v2, err := c2.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: key.GetName() + "/cryptoKeyVersions/2"})
	if err != nil || v2.GetState() != kmspb.CryptoKeyVersion_DESTROY_SCHEDULED {
		t.Fatalf("version 2 after restart: %v, %v", v2, err)
	}
	got, err := c2.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()})
	if err != nil || got.GetLabels()["a"] != "b" {
		t.Fatalf("key after restart: %v, %v", got, err)
	}
}

func TestAdminAPI(t *testing.T) {
	s, c := startTest(t, Options{})
	hs := httptest.NewServer(s.AdminHandler())
	defer hs.Close()
	ac := &AdminClient{BaseURL: hs.URL}
	ctx := context.Background()
	before := s.Clock().Now()
	now, err := ac.Advance(ctx, 48*time.Hour)
	if err != nil || !now.Equal(before.Add(48*time.Hour)) {
		t.Fatalf("Advance: %v, %v", now, err)
	}
	if err := ac.InjectFault(ctx, Fault{Method: "GetKeyRing", Code: codes.PermissionDenied, Times: 1}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetKeyRing(ctx, &kmspb.GetKeyRingRequest{Name: testRing})
	wantCode(t, err, codes.PermissionDenied, "")
	counts, err := ac.Counts(ctx)
	if err != nil || counts["GetKeyRing"] != 1 {
		t.Fatalf("Counts: %v, %v", counts, err)
	}
	if err := ac.ResetCounts(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ac.SetQuotas(ctx, true, QuotaLimits{ReadPerMinute: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetKeyRing(ctx, &kmspb.GetKeyRingRequest{Name: testRing}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetKeyRing(ctx, &kmspb.GetKeyRingRequest{Name: testRing})
	wantCode(t, err, codes.ResourceExhausted, "Read requests")
	if err := ac.InjectFault(ctx, Fault{Tamper: "bogus"}); err == nil {
		t.Fatal("bogus tamper mode accepted")
	}
	if err := ac.ClearFaults(ctx); err != nil {
		t.Fatal(err)
	}
	var _ *kms.KeyManagementClient = c
}
