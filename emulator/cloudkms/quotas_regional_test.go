package cloudkms

import (
	"context"
	"crypto"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// quotaInfo returns the ErrorInfo of a quota error.
func quotaInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			return i
		}
	}
	return nil
}

// TestRegionalQuotas checks the quota model Cloud KMS documents since
// 2026: budgets per project and location, HSM cryptographic requests
// counted per second, and soft enforcement (a request over its limit is
// served, and counted as an overrun, unless the service is overloaded).
func TestRegionalQuotas(t *testing.T) {
	s, c := startTest(t, Options{Quotas: true, QuotaModel: QuotaRegional,
		QuotaLimits: QuotaLimits{WritePerMinute: 2, HSMPerSecond: 2}, KeyRings: []string{testRing, "projects/p/locations/europe-west1/keyRings/r"}})
	ctx := context.Background()
	made := 0
	update := func(ring string) error {
		made++
		_, err := c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: ring, CryptoKeyId: fmt.Sprintf("k%d", made),
			CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN, VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256}}})
		return err
	}

	// Soft: over the limit, served while there is capacity.
	for i := range 3 {
		if err := update(testRing); err != nil {
			t.Fatalf("write %d with capacity to spare: %v", i+1, err)
		}
	}
	if n := s.Counts()[QuotaOverrunCount]; n != 1 {
		t.Errorf("overruns counted = %d, want 1", n)
	}

	// Overloaded: refused, naming the region; another region has its own
	// budget.
	s.SetQuotaOverloaded(true)
	err := update(testRing)
	wantCode(t, err, codes.ResourceExhausted, "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per region'")
	if info := quotaInfo(err); info.GetReason() != "RATE_LIMIT_EXCEEDED" || info.GetMetadata()["quota_location"] != "global" ||
		info.GetMetadata()["quota_limit"] != "WriteRequestsPerMinutePerProjectPerRegion" || info.GetMetadata()["quota_limit_value"] != "2" {
		t.Errorf("ErrorInfo = %v", info)
	}
	if err := update("projects/p/locations/europe-west1/keyRings/r"); err != nil {
		t.Errorf("a write in another region: %v", err)
	}

	// HSM signatures are counted per second, software ones per minute
	// against the cryptographic quota.
	s.SetQuotas(false)
	hsm, err := c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "hsm",
		CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN, VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, ProtectionLevel: kmspb.ProtectionLevel_HSM}}})
	if err != nil {
		t.Fatal(err)
	}
	soft := createKey(t, c, "soft", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	s.SetQuotas(true)
	sign := func(key string) error {
		_, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: key + "/cryptoKeyVersions/1", Digest: digestFor(crypto.SHA256, []byte("x"))})
		return err
	}
	for i := range 2 {
		if err := sign(hsm.GetName()); err != nil {
			t.Fatalf("HSM signature %d within the second's limit: %v", i+1, err)
		}
	}
	err = sign(hsm.GetName())
	wantCode(t, err, codes.ResourceExhausted, "HSM asymmetric requests per second per region")
	if info := quotaInfo(err); info.GetMetadata()["quota_metric"] != "cloudkms.googleapis.com/hsm_asymmetric_requests" {
		t.Errorf("ErrorInfo = %v", info)
	}
	for i := range 3 {
		if err := sign(soft.GetName()); err != nil {
			t.Fatalf("software signature %d: %v (it is not counted against the HSM limit)", i+1, err)
		}
	}
	s.Clock().Advance(time.Second)
	if err := sign(hsm.GetName()); err != nil {
		t.Errorf("HSM signature in the next second: %v", err)
	}
}

// TestQuotaModelAdmin switches the model through the admin API: the
// per-minute regime refuses at once, the regional one only when
// overloaded.
func TestQuotaModelAdmin(t *testing.T) {
	s, c := startTest(t, Options{AdminListen: "127.0.0.1:0"})
	ctx := context.Background()
	ac := &AdminClient{BaseURL: s.AdminURL()}
	read := func() error {
		_, err := c.GetKeyRing(ctx, &kmspb.GetKeyRingRequest{Name: testRing})
		return err
	}
	for _, tt := range []struct {
		model      QuotaModel
		overloaded bool
		refused    bool
	}{
		{QuotaRegional, false, false},
		{QuotaRegional, true, true},
		{QuotaPerMinute, false, true},
	} {
		if err := ac.SetQuotaModel(ctx, true, tt.model, tt.overloaded, QuotaLimits{ReadPerMinute: 1}); err != nil {
			t.Fatal(err)
		}
		if err := read(); err != nil {
			t.Fatalf("%s: the first read: %v", tt.model, err)
		}
		if err := read(); (status.Code(err) == codes.ResourceExhausted) != tt.refused {
			t.Errorf("%s (overloaded %v): the read over the limit: %v, want refused=%v", tt.model, tt.overloaded, err, tt.refused)
		}
	}
	if err := ac.SetQuotaModel(ctx, true, "hourly", false, QuotaLimits{}); err == nil {
		t.Error("an unknown quota model was accepted")
	}
}
