package gcpkms

import (
	"context"
	"crypto"
	"crypto/rsa"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// fastRetries shortens the retry pauses so fault tests take milliseconds.
func fastRetries(b *Backend) {
	b.backoffs = backoffs{
		quota:       gax.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2},
		unavailable: gax.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2},
		internal:    gax.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Multiplier: 2},
		pending:     gax.Backoff{Initial: 5 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 1.6},
	}
}

// TestPendingGeneration checks that new versions are waited for while
// PENDING_GENERATION (longer for HSM keys), within the budget, and that a
// version whose wait outlived its budget is resumed, not left behind.
func TestPendingGeneration(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{PendingGeneration: 200 * time.Millisecond, PendingGenerationHSM: 800 * time.Millisecond})
	metrics := &counter{}
	b := newBackend(t, srv, "server-a", func(o *Options) { o.Protection = kmspb.ProtectionLevel_HSM; o.Metrics = metrics })
	m := newManager(t, srv, b, "server-a", metrics)

	start := time.Now()
	if _, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatalf("GenerateKey while PENDING_GENERATION: %v", err)
	}
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Errorf("GenerateKey returned after %v, before the HSM version was ready", d)
	}
	if metrics.get("retries,method=GetPublicKey,reason=pending_generation") == 0 {
		t.Error("no pending_generation retry was counted")
	}
	key := testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A"
	if pl := getKey(t, raw, key).GetVersionTemplate().GetProtectionLevel(); pl != kmspb.ProtectionLevel_HSM {
		t.Errorf("protection level = %v, want HSM", pl)
	}

	// A budget shorter than the generation: the call fails, and the next
	// one waits for the same version instead of creating another.
	short, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	_, err := b.Create(short, createReq("x509-CA-A", engine.ECP256))
	if err == nil {
		t.Fatal("Create returned before the version could be ready")
	}
	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatalf("Create after a timed-out one: %v", err)
	}
	if want := key + "/cryptoKeyVersions/2"; g.Ref != want {
		t.Errorf("Create resumed %s, want the pending %s", g.Ref, want)
	}
	if n := len(versions(t, raw, key)); n != 2 {
		t.Errorf("%d versions exist, want 2 (no version left behind)", n)
	}
}

// TestQuotaRetries checks that RESOURCE_EXHAUSTED and UNAVAILABLE are
// retried within the budget and counted, that creations are not retried on
// UNAVAILABLE, and that the code survives when the budget runs out.
func TestQuotaRetries(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	metrics := &counter{}
	b := newBackend(t, srv, "server-a", func(o *Options) { o.Metrics = metrics })
	fastRetries(b)
	m := newManager(t, srv, b, "server-a", metrics)

	srv.InjectFault(cloudkms.Fault{Method: "CreateCryptoKey", Code: codes.ResourceExhausted, Times: 2})
	if _, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatalf("GenerateKey with 2 quota errors: %v", err)
	}
	srv.InjectFault(cloudkms.Fault{Method: "AsymmetricSign", Code: codes.ResourceExhausted, Times: 2})
	srv.InjectFault(cloudkms.Fault{Method: "AsymmetricSign", Code: codes.Unavailable, Times: 1})
	if _, _, err := m.SignData(callCtx(t), "x509-CA-A", digestOf(crypto.SHA256, "x"), crypto.SHA256); err != nil {
		t.Fatalf("SignData with 3 transient errors: %v", err)
	}
	for name, want := range map[string]float32{
		"retries,method=CreateCryptoKey,reason=resource_exhausted": 2,
		"retries,method=AsymmetricSign,reason=resource_exhausted":  2,
		"retries,method=AsymmetricSign,reason=unavailable":         1,
	} {
		if got := metrics.get(name); got != want {
			t.Errorf("metric %s = %v, want %v", name, got, want)
		}
	}

	// UNAVAILABLE on a creating call is not retried: the version may exist.
	srv.InjectFault(cloudkms.Fault{Method: "CreateCryptoKeyVersion", Code: codes.Unavailable, Times: 1})
	_, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256)
	wantCode(t, err, codes.Unavailable, "CreateCryptoKeyVersion", "not retried, as a creation may have taken effect")

	// Quota exhausted past the budget keeps its code.
	srv.InjectFault(cloudkms.Fault{Method: "AsymmetricSign", Code: codes.ResourceExhausted})
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = b.Sign(short, engine.Generation{KeyID: "x509-CA-A", Ref: testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A/cryptoKeyVersions/1", Algorithm: "EC_SIGN_P256_SHA256"},
		digestOf(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.ResourceExhausted, "AsymmetricSign", "quota")
	srv.ClearFaults()
	_ = raw
}

// TestIntegrityChecks tampers with responses as a corrupting network would:
// one bad response is asked again; a persistent one is Internal naming the
// check.
func TestIntegrityChecks(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	metrics := &counter{}
	b := newBackend(t, srv, "server-a", func(o *Options) { o.Metrics = metrics })
	m := newManager(t, srv, b, "server-a", metrics)
	if _, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatal(err)
	}
	d := digestOf(crypto.SHA256, "x")
	tests := []struct {
		method string
		tamper cloudkms.Tamper
		check  string
	}{
		{"AsymmetricSign", cloudkms.TamperSignatureCRC, "signature_crc32c"},
		{"AsymmetricSign", cloudkms.TamperSignature, "signature_crc32c"},
		{"AsymmetricSign", cloudkms.TamperVerifiedDigest, "verified_digest_crc32c"},
		{"AsymmetricSign", cloudkms.TamperName, "name"},
		{"GetPublicKey", cloudkms.TamperPEMCRC, "pem_crc32c"},
		{"GetPublicKey", cloudkms.TamperPEM, "pem_crc32c"},
		{"GetPublicKey", cloudkms.TamperName, "name"},
	}
	for _, tt := range tests {
		t.Run(tt.method+"/"+string(tt.tamper), func(t *testing.T) {
			call := func() error {
				if tt.method == "GetPublicKey" {
					_, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256)
					return err
				}
				_, _, err := m.SignData(callCtx(t), "x509-CA-A", d, crypto.SHA256)
				return err
			}
			srv.InjectFault(cloudkms.Fault{Method: tt.method, Tamper: tt.tamper, Times: 1})
			if err := call(); err != nil {
				t.Fatalf("one tampered response was not asked again: %v", err)
			}
			srv.InjectFault(cloudkms.Fault{Method: tt.method, Tamper: tt.tamper, Times: maxIntegrityAttempts})
			wantCode(t, call(), codes.Internal, tt.check, "integrity check")
			srv.ClearFaults()
		})
	}
	if metrics.get("integrity_failures") == 0 {
		t.Error("integrity failures were not counted")
	}
}

// TestSignRefusesWhatTheKeyCannotDo checks InvalidArgument naming the key's
// algorithm for requests a Cloud KMS key cannot serve.
func TestSignRefusesWhatTheKeyCannotDo(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	m := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	for _, k := range []struct {
		id string
		t  engine.KeyType
	}{{"ec", engine.ECP256}, {"rsa", engine.RSA2048}} {
		if _, err := m.GenerateKey(callCtx(t), k.id, k.t); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		id   string
		opts crypto.SignerOpts
		alg  string
	}{
		{"ec", crypto.SHA384, "EC_SIGN_P256_SHA256"},
		{"rsa", crypto.SHA512, "RSA_SIGN_PKCS1_2048_SHA256"},
		{"rsa", &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}, "RSA_SIGN_PKCS1_2048_SHA256"},
	}
	for _, tt := range tests {
		_, _, err := m.SignData(callCtx(t), tt.id, digestOf(tt.opts.HashFunc(), "x"), tt.opts)
		wantCode(t, err, codes.InvalidArgument, tt.alg)
	}

	pss := newManager(t, srv, newBackend(t, srv, "server-p", func(o *Options) { o.Scheme = SchemePSS }), "server-p", nil)
	if _, err := pss.GenerateKey(callCtx(t), "rsa", engine.RSA2048); err != nil {
		t.Fatal(err)
	}
	_, _, err := pss.SignData(callCtx(t), "rsa", digestOf(crypto.SHA256, "x"), crypto.SHA256)
	wantCode(t, err, codes.InvalidArgument, "RSA_SIGN_PSS_2048_SHA256")
	if _, _, err := pss.SignData(callCtx(t), "rsa", digestOf(crypto.SHA256, "x"), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: crypto.SHA256}); err != nil {
		t.Errorf("PSS signature: %v", err)
	}
}

// TestProjectQuota runs against the emulator's per-minute quotas (the
// service's RESOURCE_EXHAUSTED with its ErrorInfo): a write over the quota
// is retried until the next minute's window opens, within the budget.
func TestProjectQuota(t *testing.T) {
	clock := cloudkms.NewManualClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	// A creation writes twice: the key (with the creator's pending lease),
	// then the lease committed.
	srv, _ := startEmulator(t, cloudkms.Options{Clock: clock, Quotas: true, QuotaLimits: cloudkms.QuotaLimits{WritePerMinute: 2}})
	metrics := &counter{}
	b := newBackend(t, srv, "server-a", func(o *Options) { o.Metrics = metrics })
	fastRetries(b)
	m := newManager(t, srv, b, "server-a", metrics)
	// Cleanups run last first: the quota is lifted before the manager
	// releases its leases, which would otherwise wait out their budget.
	t.Cleanup(func() { srv.SetQuotas(false) })
	if _, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatal(err)
	}
	// The second creation is over the minute's quota until the clock moves.
	go func() {
		time.Sleep(100 * time.Millisecond)
		clock.Advance(time.Minute)
	}()
	if _, err := m.GenerateKey(callCtx(t), "JWT-Signer-A", engine.ECP256); err != nil {
		t.Fatalf("GenerateKey over the write quota: %v", err)
	}
	if metrics.get("retries,method=CreateCryptoKey,reason=resource_exhausted") == 0 {
		t.Error("the quota error was not retried")
	}
}

// TestRotationCalls checks what a rotation costs when nothing went wrong
// before it: no listing for a pending version to resume (only a creation of
// this process that ran out of budget leaves one).
func TestRotationCalls(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a")
	if _, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256)); err != nil {
		t.Fatal(err)
	}
	before := srv.Counts()
	if _, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256)); err != nil {
		t.Fatal(err)
	}
	after := srv.Counts()
	want := map[string]int{"GetCryptoKey": 1, "UpdateCryptoKey": 1, "CreateCryptoKeyVersion": 1, "GetPublicKey": 1, "ListCryptoKeyVersions": 0}
	for method, n := range want {
		if got := after[method] - before[method]; got != n {
			t.Errorf("%s called %d times by a rotation, want %d", method, got, n)
		}
	}
}

// TestRegionalHSMQuota runs against the emulator's current quota model
// with the service overloaded: HSM signatures over the per-second limit
// are RESOURCE_EXHAUSTED with the regional ErrorInfo, retried until the
// next second, within the budget.
func TestRegionalHSMQuota(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{QuotaModel: cloudkms.QuotaRegional, QuotaLimits: cloudkms.QuotaLimits{HSMPerSecond: 1}})
	metrics := &counter{}
	b := newBackend(t, srv, "server-a", func(o *Options) { o.Metrics = metrics; o.Protection = kmspb.ProtectionLevel_HSM })
	fastRetries(b)
	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatal(err)
	}
	srv.SetQuotaOverloaded(true)
	srv.SetQuotas(true)
	t.Cleanup(func() { srv.SetQuotas(false) })
	for i := range 2 {
		if _, err := b.Sign(callCtx(t), g, digestOf(crypto.SHA256, "x"), crypto.SHA256); err != nil {
			t.Fatalf("signature %d over the HSM quota: %v", i+1, err)
		}
	}
	if metrics.get("retries,method=AsymmetricSign,reason=resource_exhausted") == 0 {
		t.Error("no signature met the per-second quota; the test did not test it")
	}
}
