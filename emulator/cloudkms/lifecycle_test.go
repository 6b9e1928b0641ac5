package cloudkms

import (
	"context"
	"crypto"
	"testing"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

func TestCreateCryptoKeyValidation(t *testing.T) {
	_, c := startTest(t, Options{})
	ctx := context.Background()
	ok := &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN,
		VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256}}
	key, err := c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "k", CryptoKey: ok})
	if err != nil {
		t.Fatal(err)
	}
	if key.GetPrimary() != nil || key.GetVersionTemplate().GetProtectionLevel() != kmspb.ProtectionLevel_SOFTWARE ||
		key.GetDestroyScheduledDuration().AsDuration() != 30*24*time.Hour || key.GetCreateTime() == nil {
		t.Fatalf("created key = %v", key)
	}
	for _, tc := range []struct {
		desc string
		req  *kmspb.CreateCryptoKeyRequest
		code codes.Code
		msg  string
	}{
		{"taken id", &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "k", CryptoKey: ok}, codes.AlreadyExists, "CryptoKey " + testRing + "/cryptoKeys/k already exists."},
		{"bad id", &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "a.b", CryptoKey: ok}, codes.InvalidArgument, "crypto_key_id"},
		{"long id", &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: string(make([]byte, 64)), CryptoKey: ok}, codes.InvalidArgument, "crypto_key_id"},
		{"missing ring", &kmspb.CreateCryptoKeyRequest{Parent: "projects/p/locations/global/keyRings/nope", CryptoKeyId: "k", CryptoKey: ok}, codes.NotFound, "KeyRing projects/p/locations/global/keyRings/nope not found."},
		{"no algorithm", &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "k2", CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN}}, codes.InvalidArgument, "algorithm"},
		{"bad label", &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "k2", CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN, Labels: map[string]string{"Upper": "x"},
			VersionTemplate: ok.VersionTemplate}}, codes.InvalidArgument, "label"},
		{"short destroy duration", &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "k2", CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN,
			VersionTemplate: ok.VersionTemplate, DestroyScheduledDuration: durationpb.New(time.Hour)}}, codes.InvalidArgument, "destroy_scheduled_duration"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := c.CreateCryptoKey(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	// skip_initial_version_creation leaves the key without versions.
	_, err = c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "empty", CryptoKey: ok, SkipInitialVersionCreation: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: testRing + "/cryptoKeys/empty"}).Next()
	if resp != nil || err == nil {
		t.Fatalf("skip_initial_version_creation: got version %v", resp)
	}
	// CreateKeyRing: on demand, AlreadyExists the second time.
	if _, err := c.CreateKeyRing(ctx, &kmspb.CreateKeyRingRequest{Parent: "projects/p/locations/global", KeyRingId: "r2"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateKeyRing(ctx, &kmspb.CreateKeyRingRequest{Parent: "projects/p/locations/global", KeyRingId: "r2"})
	wantCode(t, err, codes.AlreadyExists, "KeyRing projects/p/locations/global/keyRings/r2 already exists.")
	if _, err := c.GetKeyRing(ctx, &kmspb.GetKeyRingRequest{Name: "projects/p/locations/global/keyRings/r2"}); err != nil {
		t.Fatal(err)
	}
	n := 0
	for it := c.ListKeyRings(ctx, &kmspb.ListKeyRingsRequest{Parent: "projects/p/locations/global"}); ; n++ {
		if _, err := it.Next(); err != nil {
			break
		}
	}
	if n != 2 {
		t.Fatalf("ListKeyRings: %d rings, want 2", n)
	}
}

func TestVersionStateMachine(t *testing.T) {
	s, c := startTest(t, Options{PendingGeneration: time.Minute})
	ctx := context.Background()
	clock := s.Clock()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	v1 := key.GetName() + "/cryptoKeyVersions/1"
	sign := func(name string) error {
		_, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: name, Digest: digestFor(crypto.SHA256, []byte("x"))})
		return err
	}
	get := func(name string) *kmspb.CryptoKeyVersion {
		t.Helper()
		v, err := c.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	// PENDING_GENERATION until the configured time has passed on the clock.
	if st := get(v1).GetState(); st != kmspb.CryptoKeyVersion_PENDING_GENERATION {
		t.Fatalf("new version state = %v", st)
	}
	err := sign(v1)
	wantCode(t, err, codes.FailedPrecondition, v1+" is not enabled, current state is: PENDING_GENERATION.")
	var pf *errdetails.PreconditionFailure
	for _, d := range status.Convert(err).Details() {
		if p, ok := d.(*errdetails.PreconditionFailure); ok {
			pf = p
		}
	}
	if pf == nil || pf.GetViolations()[0].GetType() != "KEY_PENDING_GENERATION" {
		t.Fatalf("PreconditionFailure detail = %v", pf)
	}
	// The service's shape exactly: one violation, the version as its
	// subject, no description.
	if vs := pf.GetViolations(); len(vs) != 1 || vs[0].GetSubject() != v1 || vs[0].GetDescription() != "" {
		t.Fatalf("PreconditionFailure violations = %v, want one of type KEY_PENDING_GENERATION, subject %s, no description", vs, v1)
	}
	_, err = c.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: v1})
	wantCode(t, err, codes.FailedPrecondition, "PENDING_GENERATION")
	clock.Advance(time.Minute)
	v := get(v1)
	if v.GetState() != kmspb.CryptoKeyVersion_ENABLED || !v.GetGenerateTime().AsTime().Equal(v.GetCreateTime().AsTime().Add(time.Minute)) {
		t.Fatalf("after the pending time: %v", v)
	}
	if err := sign(v1); err != nil {
		t.Fatal(err)
	}

	// Version 2; filter state = ENABLED.
	v2, err := c.CreateCryptoKeyVersion(ctx, &kmspb.CreateCryptoKeyVersionRequest{Parent: key.GetName(), CryptoKeyVersion: &kmspb.CryptoKeyVersion{State: kmspb.CryptoKeyVersion_ENABLED}})
	if err != nil {
		t.Fatal(err)
	}
	if v2.GetName() != key.GetName()+"/cryptoKeyVersions/2" || v2.GetState() != kmspb.CryptoKeyVersion_PENDING_GENERATION {
		t.Fatalf("CreateCryptoKeyVersion = %v", v2)
	}
	if got := listVersionNames(t, c, key.GetName(), "state = ENABLED"); len(got) != 1 || got[0] != v1 {
		t.Fatalf("ENABLED versions = %v", got)
	}
	clock.Advance(time.Minute)

	// DISABLED and back.
	upd := func(name string, st kmspb.CryptoKeyVersion_CryptoKeyVersionState) (*kmspb.CryptoKeyVersion, error) {
		return c.UpdateCryptoKeyVersion(ctx, &kmspb.UpdateCryptoKeyVersionRequest{
			CryptoKeyVersion: &kmspb.CryptoKeyVersion{Name: name, State: st}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"state"}}})
	}
	if v, err := upd(v1, kmspb.CryptoKeyVersion_DISABLED); err != nil || v.GetState() != kmspb.CryptoKeyVersion_DISABLED {
		t.Fatalf("disable: %v, %v", v, err)
	}
	wantCode(t, sign(v1), codes.FailedPrecondition, "current state is: DISABLED.")
	if _, err := upd(v1, kmspb.CryptoKeyVersion_ENABLED); err != nil {
		t.Fatal(err)
	}
	_, err = upd(v1, kmspb.CryptoKeyVersion_DESTROYED)
	wantCode(t, err, codes.InvalidArgument, "ENABLED or DISABLED")

	// DESTROY_SCHEDULED with destroy_time = now + 30 days, restore, DESTROYED.
	now := clock.Now()
	d, err := c.DestroyCryptoKeyVersion(ctx, &kmspb.DestroyCryptoKeyVersionRequest{Name: v1})
	if err != nil {
		t.Fatal(err)
	}
	if d.GetState() != kmspb.CryptoKeyVersion_DESTROY_SCHEDULED || !d.GetDestroyTime().AsTime().Equal(now.Add(30*24*time.Hour)) {
		t.Fatalf("destroy: %v", d)
	}
	wantCode(t, sign(v1), codes.FailedPrecondition, "DESTROY_SCHEDULED")
	_, err = c.DestroyCryptoKeyVersion(ctx, &kmspb.DestroyCryptoKeyVersionRequest{Name: v1})
	wantCode(t, err, codes.FailedPrecondition, "has value DESTROY_SCHEDULED in field crypto_key_version.state")
	r, err := c.RestoreCryptoKeyVersion(ctx, &kmspb.RestoreCryptoKeyVersionRequest{Name: v1})
	if err != nil || r.GetState() != kmspb.CryptoKeyVersion_DISABLED || r.GetDestroyTime() != nil {
		t.Fatalf("restore: %v, %v", r, err)
	}
	if _, err := c.DestroyCryptoKeyVersion(ctx, &kmspb.DestroyCryptoKeyVersionRequest{Name: v1}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30*24*time.Hour - time.Second)
	if st := get(v1).GetState(); st != kmspb.CryptoKeyVersion_DESTROY_SCHEDULED {
		t.Fatalf("1s before destroy_time: %v", st)
	}
	clock.Advance(time.Second)
	v = get(v1)
	if v.GetState() != kmspb.CryptoKeyVersion_DESTROYED || !v.GetDestroyEventTime().AsTime().Equal(v.GetDestroyTime().AsTime()) {
		t.Fatalf("after destroy_time: %v", v)
	}
	_, err = c.RestoreCryptoKeyVersion(ctx, &kmspb.RestoreCryptoKeyVersionRequest{Name: v1})
	wantCode(t, err, codes.FailedPrecondition, "DESTROYED")
	if err := sign(v1 + "0"); status.Code(err) != codes.NotFound {
		t.Fatalf("sign missing version: %v", err)
	}
	if err := sign(key.GetName() + "/cryptoKeyVersions/2"); err != nil {
		t.Fatal(err)
	}
}

func TestPendingGenerationHSM(t *testing.T) {
	_, c := startTest(t, Options{PendingGenerationHSM: time.Hour})
	ctx := context.Background()
	k, err := c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "hsm",
		CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN, VersionTemplate: &kmspb.CryptoKeyVersionTemplate{
			Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384, ProtectionLevel: kmspb.ProtectionLevel_HSM}}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: k.GetName() + "/cryptoKeyVersions/1"})
	if err != nil || v.GetState() != kmspb.CryptoKeyVersion_PENDING_GENERATION || v.GetProtectionLevel() != kmspb.ProtectionLevel_HSM {
		t.Fatalf("HSM version: %v, %v", v, err)
	}
	sw := createKey(t, c, "sw", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	if got := listVersionNames(t, c, sw.GetName(), "state=ENABLED"); len(got) != 1 {
		t.Fatalf("SOFTWARE version not ENABLED at once: %v", got)
	}
}

func TestUpdateCryptoKey(t *testing.T) {
	_, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, map[string]string{"a": "1", "b": "2"})
	mask := func(p ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: p} }
	got, err := c.UpdateCryptoKey(ctx, &kmspb.UpdateCryptoKeyRequest{
		CryptoKey: &kmspb.CryptoKey{Name: key.GetName(), Labels: map[string]string{"c": "3"}}, UpdateMask: mask("labels")})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetLabels()) != 1 || got.GetLabels()["c"] != "3" {
		t.Fatalf("labels are replaced as a whole, got %v", got.GetLabels())
	}
	for _, tc := range []struct {
		desc string
		req  *kmspb.UpdateCryptoKeyRequest
		code codes.Code
		msg  string
	}{
		{"no mask", &kmspb.UpdateCryptoKeyRequest{CryptoKey: &kmspb.CryptoKey{Name: key.GetName()}}, codes.InvalidArgument, "update_mask"},
		{"bad label key", &kmspb.UpdateCryptoKeyRequest{CryptoKey: &kmspb.CryptoKey{Name: key.GetName(), Labels: map[string]string{"1x": ""}}, UpdateMask: mask("labels")}, codes.InvalidArgument, "must start with a lowercase letter"},
		{"protection level", &kmspb.UpdateCryptoKeyRequest{CryptoKey: &kmspb.CryptoKey{Name: key.GetName()}, UpdateMask: mask("version_template.protection_level")}, codes.InvalidArgument, "immutable"},
		{"unknown path", &kmspb.UpdateCryptoKeyRequest{CryptoKey: &kmspb.CryptoKey{Name: key.GetName()}, UpdateMask: mask("color")}, codes.InvalidArgument, "color"},
		{"missing key", &kmspb.UpdateCryptoKeyRequest{CryptoKey: &kmspb.CryptoKey{Name: testRing + "/cryptoKeys/nope"}, UpdateMask: mask("labels")}, codes.NotFound, "CryptoKey " + testRing + "/cryptoKeys/nope not found."},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := c.UpdateCryptoKey(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	// Changing the template's algorithm affects new versions only (what
	// SPIRE does when a key type changes).
	if _, err := c.UpdateCryptoKey(ctx, &kmspb.UpdateCryptoKeyRequest{
		CryptoKey:  &kmspb.CryptoKey{Name: key.GetName(), VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384}},
		UpdateMask: mask("version_template.algorithm")}); err != nil {
		t.Fatal(err)
	}
	v2, err := c.CreateCryptoKeyVersion(ctx, &kmspb.CreateCryptoKeyVersionRequest{Parent: key.GetName(), CryptoKeyVersion: &kmspb.CryptoKeyVersion{}})
	if err != nil || v2.GetAlgorithm() != kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384 {
		t.Fatalf("version after algorithm change: %v, %v", v2, err)
	}
	v1, _ := c.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: key.GetName() + "/cryptoKeyVersions/1"})
	if v1.GetAlgorithm() != kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256 {
		t.Fatalf("version 1 algorithm changed: %v", v1)
	}
	_, err = c.UpdateCryptoKeyPrimaryVersion(ctx, &kmspb.UpdateCryptoKeyPrimaryVersionRequest{Name: key.GetName(), CryptoKeyVersionId: "2"})
	wantCode(t, err, codes.FailedPrecondition, "primary")
}

func listVersionNames(t *testing.T, c interface {
	ListCryptoKeyVersions(context.Context, *kmspb.ListCryptoKeyVersionsRequest, ...gax.CallOption) *kms.CryptoKeyVersionIterator
}, parent, filter string) []string {
	t.Helper()
	var out []string
	it := c.ListCryptoKeyVersions(context.Background(), &kmspb.ListCryptoKeyVersionsRequest{Parent: parent, Filter: filter})
	for {
		v, err := it.Next()
		if err == iterator.Done {
			return out
		}
		if err != nil {
			t.Fatalf("ListCryptoKeyVersions(%q): %v", filter, err)
		}
		out = append(out, v.GetName())
	}
}
