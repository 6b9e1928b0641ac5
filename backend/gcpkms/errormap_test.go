package gcpkms

import (
	"context"
	"crypto"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/kmskeeper/kmskeeper/engine"
)

// withDetails returns a status error carrying details.
func withDetails(code codes.Code, msg string, details ...protoadapt.MessageV1) error {
	st := status.New(code, msg)
	for _, d := range details {
		var err error
		if st, err = st.WithDetails(d); err != nil {
			panic(err)
		}
	}
	return st.Err()
}

// serviceDisabledError is Cloud KMS's answer when the API is not enabled in
// the project.
func serviceDisabledError() error {
	return withDetails(codes.PermissionDenied,
		"Cloud Key Management Service (KMS) API has not been used in project kmskeeper-test before or it is disabled.",
		&errdetails.ErrorInfo{Reason: "SERVICE_DISABLED", Domain: "googleapis.com",
			Metadata: map[string]string{"consumer": "projects/kmskeeper-test", "service": "cloudkms.googleapis.com"}})
}

// TestErrorMappingAndRetries drives each backend operation through a
// scripted Cloud KMS (no emulator, no network): which answers are retried
// and how often, and what code and message the plugin gives for those that
// are not.
func TestErrorMappingAndRetries(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "connection reset")
	internal := status.Error(codes.Internal, "Internal error encountered.")
	quota := status.Error(codes.ResourceExhausted, "Quota exceeded for quota metric 'Write requests'.")
	tests := []struct {
		name   string
		op     string // create, rotate, sign, fetch, list, retire, keepalive
		method string
		errs   []error
		budget time.Duration // zero: SPIRE's 30 s
		code   codes.Code
		has    []string // fragments the error must contain
		hasNot []string // and must not
		tries  int      // calls of method the operation makes, when non-zero
	}{
		{name: "denied signing names the permission", op: "sign", method: "AsymmetricSign", errs: []error{status.Error(codes.PermissionDenied, "Permission 'cloudkms.cryptoKeyVersions.useToSign' denied")},
			code: codes.PermissionDenied, has: []string{"AsymmetricSign", "grant the plugin's identity the permission cloudkms.cryptoKeyVersions.useToSign"}, tries: 1},
		{name: "denied creation names the permission", op: "create", method: "CreateCryptoKey", errs: []error{status.Error(codes.PermissionDenied, "denied")},
			code: codes.PermissionDenied, has: []string{"cloudkms.cryptoKeys.create"}, tries: 1},
		{name: "denied listing names the permission", op: "list", method: "ListCryptoKeys", errs: []error{status.Error(codes.PermissionDenied, "denied")},
			code: codes.PermissionDenied, has: []string{"cloudkms.cryptoKeys.list"}, tries: 1},
		{name: "API not enabled", op: "create", method: "GetCryptoKey", errs: []error{serviceDisabledError()},
			code: codes.PermissionDenied, has: []string{"enable the Cloud KMS API in project kmskeeper-test"}, hasNot: []string{"grant the plugin's identity"}, tries: 1},
		{name: "API not enabled, project from the resource", op: "sign", method: "AsymmetricSign",
			errs: []error{withDetails(codes.PermissionDenied, "disabled", &errdetails.ErrorInfo{Reason: "SERVICE_DISABLED"})},
			code: codes.PermissionDenied, has: []string{"enable the Cloud KMS API in project kmskeeper-test"}},
		{name: "refused credentials", op: "list", method: "ListCryptoKeys", errs: []error{status.Error(codes.Unauthenticated, "invalid credentials")},
			code: codes.Unauthenticated, has: []string{"credentials were refused", "service_account_file"}, tries: 1},
		{name: "missing key ring", op: "list", method: "ListCryptoKeys", errs: []error{status.Error(codes.NotFound, "KeyRing not found")},
			code: codes.NotFound, has: []string{"the plugin creates keys, not key rings"}},
		{name: "quota absorbed", op: "sign", method: "AsymmetricSign", errs: []error{quota, quota}, code: codes.OK, tries: 3},
		{name: "quota absorbed on a creation", op: "create", method: "CreateCryptoKey", errs: []error{quota, quota}, code: codes.OK, tries: 3},
		{name: "quota past the budget keeps its code", op: "sign", method: "AsymmetricSign", errs: repeat(quota, 1000), budget: 300 * time.Millisecond,
			code: codes.ResourceExhausted, has: []string{"AsymmetricSign", "quota still exceeded"}},
		{name: "unavailable absorbed", op: "sign", method: "AsymmetricSign", errs: []error{unavailable}, code: codes.OK, tries: 2},
		{name: "unavailable on a creation is not retried", op: "rotate", method: "CreateCryptoKeyVersion", errs: []error{unavailable},
			code: codes.Unavailable, has: []string{"CreateCryptoKeyVersion", "not retried, as a creation may have taken effect"}, tries: 1},
		{name: "deadline exceeded by the service absorbed", op: "sign", method: "AsymmetricSign", errs: []error{status.Error(codes.DeadlineExceeded, "Deadline exceeded.")}, code: codes.OK, tries: 2},
		{name: "deadline exceeded on a creation is not retried", op: "rotate", method: "CreateCryptoKeyVersion", errs: []error{status.Error(codes.DeadlineExceeded, "Deadline exceeded.")},
			code: codes.Unavailable, tries: 1},
		{name: "internal absorbed on reads and label updates", op: "rotate", method: "UpdateCryptoKey", errs: []error{internal}, code: codes.OK, tries: 2},
		{name: "lasting internal is bounded", op: "sign", method: "AsymmetricSign", errs: repeat(internal, 10),
			code: codes.Unavailable, has: []string{"AsymmetricSign", "INTERNAL"}, tries: 1 + maxInternalRetries},
		{name: "internal on a creation is not retried", op: "rotate", method: "CreateCryptoKeyVersion", errs: []error{internal},
			code: codes.Unavailable, has: []string{"creations are not retried"}, tries: 1},
		{name: "pending generation waited out", op: "create", method: "GetPublicKey", errs: []error{pendingError(), pendingError()}, code: codes.OK, tries: 3},
		{name: "disabled version", op: "fetch", method: "GetPublicKey",
			errs: []error{status.Error(codes.FailedPrecondition, "v is not enabled, current state is: DISABLED.")},
			code: codes.FailedPrecondition, has: []string{"not in a state that allows it"}, tries: 1},
		{name: "refused request", op: "create", method: "CreateCryptoKey", errs: []error{status.Error(codes.InvalidArgument, "bad algorithm")},
			code: codes.InvalidArgument, has: []string{"refused the request as invalid"}, tries: 1},
		{name: "a version already gone is retired", op: "retire", method: "DestroyCryptoKeyVersion", errs: []error{status.Error(codes.NotFound, "gone")}, code: codes.OK, tries: 1},
		{name: "keep-alive keeps the code and names the key", op: "keepalive", method: "UpdateCryptoKey", errs: []error{status.Error(codes.PermissionDenied, "denied")},
			code: codes.PermissionDenied, has: []string{"key x509-CA-A: keep-alive", "cloudkms.cryptoKeys.update"}},
		{name: "unknown failure", op: "sign", method: "AsymmetricSign", errs: []error{errors.New("boom")}, code: codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, f := fakeBackend(t)
			var g engine.Generation
			if tt.op != "create" && tt.op != "list" {
				var err error
				if g, err = b.Create(context.Background(), createReq("x509-CA-A", engine.ECP256)); err != nil {
					t.Fatal(err)
				}
				g = committed(t, b, g)
			}
			budget := tt.budget
			if budget == 0 {
				budget = 30 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			before := f.count(tt.method)
			f.fail(tt.method, tt.errs...)
			var err error
			switch tt.op {
			case "create", "rotate":
				_, err = b.Create(ctx, createReq("x509-CA-A", engine.ECP256))
			case "sign":
				_, err = b.Sign(ctx, g, digestOf(crypto.SHA256, "x"), crypto.SHA256)
			case "fetch":
				_, err = b.Fetch(ctx, g)
			case "list":
				_, err = b.ListGenerations(ctx)
			case "retire":
				err = b.Retire(ctx, g)
			case "keepalive":
				_, err = b.KeepAlive(ctx, g)
			default:
				t.Fatalf("unknown op %q", tt.op)
			}
			if got := status.Code(err); got != tt.code {
				t.Fatalf("%s with %s failing: err = %v (code %v), want code %v", tt.op, tt.method, err, got, tt.code)
			}
			if err != nil && !containsAll(err.Error(), tt.has...) {
				t.Errorf("err = %v, want it to contain %q", err, tt.has)
			}
			for _, s := range tt.hasNot {
				if err != nil && containsAll(err.Error(), s) {
					t.Errorf("err = %v, want it not to contain %q", err, s)
				}
			}
			if got := f.count(tt.method) - before; tt.tries > 0 && got != tt.tries {
				t.Errorf("%s tried %d times, want %d", tt.method, got, tt.tries)
			}
		})
	}
}

// repeat returns n copies of err.
func repeat(err error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}

// TestRetriesCounted checks that each retry is counted with its method and
// reason, the metric docs/gcp.md describes.
func TestRetriesCounted(t *testing.T) {
	metrics := &counter{}
	b, f := fakeBackend(t, func(o *Options) { o.Metrics = metrics })
	g, err := b.Create(context.Background(), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatal(err)
	}
	f.fail("AsymmetricSign", status.Error(codes.ResourceExhausted, "quota"), status.Error(codes.Unavailable, "down"),
		status.Error(codes.Internal, "oops"), status.Error(codes.Internal, "oops"), status.Error(codes.DeadlineExceeded, "Deadline exceeded."))
	if _, err := b.Sign(callCtx(t), g, digestOf(crypto.SHA256, "x"), crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	for reason, want := range map[string]float32{"resource_exhausted": 1, "unavailable": 1, "internal": 2, "deadline_exceeded": 1} {
		if got := metrics.get("retries,method=AsymmetricSign,reason=" + reason); got != want {
			t.Errorf("AsymmetricSign retries with reason %s = %v, want %v", reason, got, want)
		}
	}
}

// TestRefusedPolicyNeverServes checks issue 16 item 1 without the wire: a
// CryptoKey whose IAM policy Cloud KMS refused is not served; the error
// names the policy's member; the next creation sets the policy before it
// adds a version; a key that served is never given its policy again.
func TestRefusedPolicyNeverServes(t *testing.T) {
	const email = "spire-server@kmskeeper-test.iam.gserviceaccount.com"
	b, f := fakeBackend(t, func(o *Options) { o.ServiceAccountEmail = email })
	key := fakeKey("x509-CA-A")
	f.fail("SetIamPolicy", status.Error(codes.InvalidArgument, "Service account "+email+" does not exist."))
	_, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	wantCode(t, err, codes.InvalidArgument, "SetIamPolicy", "serviceAccount:"+email, "no version of the key is served until the policy is set", "does not exist")
	if f.count("SetIamPolicy") != 1 {
		t.Errorf("SetIamPolicy tried %d times; INVALID_ARGUMENT is not retried", f.count("SetIamPolicy"))
	}

	// Refused again: still nothing served, and no version added.
	f.fail("SetIamPolicy", status.Error(codes.InvalidArgument, "Service account "+email+" does not exist."))
	_, err = b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	wantCode(t, err, codes.InvalidArgument, "serviceAccount:"+email)
	if n := f.count("CreateCryptoKeyVersion"); n != 0 {
		t.Errorf("%d versions added to a key without its policy", n)
	}

	// Accepted: the policy is set before the new version is made.
	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatal(err)
	}
	if p := f.policy(key); p == nil || p.GetBindings()[0].GetMembers()[0] != "serviceAccount:"+email {
		t.Fatalf("policy of %s = %v, want the default one", key, p)
	}
	if want := versionName(key, 2); g.Ref != want {
		t.Errorf("served %s, want the new version %s", g.Ref, want)
	}

	// Once a version served, a rotation does not write the policy again.
	committed(t, b, g)
	sets := f.count("SetIamPolicy")
	if _, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256)); err != nil {
		t.Fatal(err)
	}
	if f.count("SetIamPolicy") != sets {
		t.Error("a rotation of a key that served set its policy again")
	}
}

// TestPolicyOwed checks the labels that say a key's first creation never
// completed.
func TestPolicyOwed(t *testing.T) {
	key := fakeKey("x509-CA-A")
	now := time.Now().UnixMilli()
	tests := []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{"first creation pending", map[string]string{labelRecent: "1-1", labelLeasePrefix + "p1": entry(1, now, true)}, true},
		{"first creation, lease released", map[string]string{labelRecent: "1-3"}, true},
		{"version 1 committed", map[string]string{labelRecent: "1-1", labelLeasePrefix + "p1": entry(1, now, false)}, false},
		{"another holder committed", map[string]string{labelRecent: "1-1", labelLeasePrefix + "p1": entry(1, now, true), labelLeasePrefix + "p2": entry(1, now, false)}, false},
		{"rotated since", map[string]string{labelRecent: "2-1", labelLeasePrefix + "p1": entry(2, now, true)}, false},
		{"made by the built-in plugin", map[string]string{labelActive: "true"}, false},
	}
	for _, tt := range tests {
		if got := policyOwed(key, tt.labels); got != tt.want {
			t.Errorf("%s: policyOwed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// entry is a lease label value of one entry.
func entry(version uint64, ms int64, pending bool) string {
	return leaseEntry{num: version, renewed: ms, pending: pending}.String()
}
