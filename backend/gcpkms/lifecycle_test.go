package gcpkms

import (
	"crypto"
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// spireKeys are the key IDs and types SPIRE's CA manager uses.
var spireKeys = []struct {
	id string
	t  engine.KeyType
}{
	{"x509-CA-A", engine.ECP256},
	{"x509-CA-B", engine.ECP384},
	{"JWT-Signer-A", engine.RSA2048},
	{"JWT-Signer-B", engine.ECP256},
}

// TestStartupCallCounts checks what a restart costs: one filtered listing
// of CryptoKeys, and for this server's keys only one version listing and one
// public key each; other servers' keys cost nothing more.
func TestStartupCallCounts(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	other := newManager(t, srv, newBackend(t, srv, "server-b"), "server-b", nil)
	if _, err := other.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	want := map[string]engine.PublicKey{}
	for _, k := range spireKeys {
		pk, err := m.GenerateKey(callCtx(t), k.id, k.t)
		if err != nil {
			t.Fatalf("GenerateKey(%s): %v", k.id, err)
		}
		want[k.id] = pk
	}

	srv.ResetCounts()
	restarted := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	got := srv.Counts()
	// One listing pass, one public key each, and the lease each adopted key
	// gets (written on the labels the listing returned: no read).
	wantCounts := map[string]int{"ListCryptoKeys": 1, "ListCryptoKeyVersions": len(spireKeys), "GetPublicKey": len(spireKeys), "UpdateCryptoKey": len(spireKeys)}
	if fmt.Sprint(got) != fmt.Sprint(wantCounts) {
		t.Errorf("start-up calls = %v, want %v", got, wantCounts)
	}
	for id, pk := range want {
		got, err := restarted.GetPublicKey(callCtx(t), id)
		if err != nil || got.Fingerprint != pk.Fingerprint {
			t.Errorf("after restart %s = %s, %v; want %s", id, got.Fingerprint, err, pk.Fingerprint)
		}
	}
}

// TestGenerateSignRotate creates, signs with and rotates a key: rotation adds
// a version and, once the superseded one has settled, schedules it for
// destruction.
func TestGenerateSignRotate(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	m := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	m.Start()
	first, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	d := digestOf(crypto.SHA256, "hello")
	if _, fp, err := m.SignData(callCtx(t), "x509-CA-A", d, crypto.SHA256); err != nil || fp != first.Fingerprint {
		t.Fatalf("SignData = %s, %v", fp, err)
	}
	second, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	if second.Fingerprint == first.Fingerprint {
		t.Fatal("rotation kept the fingerprint")
	}
	key := testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A"
	waitFor(t, "the superseded version to be scheduled for destruction", func() bool {
		runTasks(t, srv, m)
		vs := versions(t, raw, key)
		return vs[key+"/cryptoKeyVersions/1"] == kmspb.CryptoKeyVersion_DESTROY_SCHEDULED &&
			vs[key+"/cryptoKeyVersions/2"] == kmspb.CryptoKeyVersion_ENABLED
	})
	labels := getKey(t, raw, key).GetLabels()
	for k, v := range map[string]string{labelTrustDomain: trustDomainLabel(testTrustDomain), labelServerID: "server-a", labelActive: "true"} {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}
	if _, ok := parseUnixLabel(labels[labelLastUpdate]); !ok {
		t.Errorf("label %s = %q, want Unix seconds (set at creation)", labelLastUpdate, labels[labelLastUpdate])
	}
}

// TestRetireIsIdempotent checks that retiring a version already scheduled
// for destruction, or gone, is not an error.
func TestRetireIsIdempotent(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a")
	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := b.Retire(callCtx(t), g); err != nil {
			t.Fatalf("Retire #%d: %v", i+1, err)
		}
	}
	if st := versions(t, raw, testRing+"/cryptoKeys/spire-key-server-a-x509-CA-A")[g.Ref]; st != kmspb.CryptoKeyVersion_DESTROY_SCHEDULED {
		t.Errorf("%s is %v, want DESTROY_SCHEDULED", g.Ref, st)
	}
	g.Ref = testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A/cryptoKeyVersions/99"
	if err := b.Retire(callCtx(t), g); err != nil {
		t.Errorf("Retire of a missing version: %v", err)
	}
}

// TestCreateRefuses checks the keys Create will not make or take over.
func TestCreateRefuses(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	// Server "a" and server "a-b" both map "b-x509-CA-A"/"x509-CA-A" to
	// spire-key-a-b-x509-CA-A: the labels say whose it is.
	if _, err := newBackend(t, srv, "a-b").Create(callCtx(t), createReq("x509-CA-A", engine.ECP256)); err != nil {
		t.Fatal(err)
	}
	_, err := newBackend(t, srv, "a").Create(callCtx(t), createReq("b-x509-CA-A", engine.ECP256))
	wantCode(t, err, codes.FailedPrecondition, `belongs to server "a-b"`)

	other := newBackend(t, srv, "a-b", func(o *Options) { o.TrustDomain = "other.org" })
	_, err = other.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	wantCode(t, err, codes.FailedPrecondition, "another trust domain")

	_, err = newBackend(t, srv, "server-a").Create(callCtx(t), createReq("x509.CA", engine.ECP256))
	wantCode(t, err, codes.InvalidArgument, `key ID "x509.CA"`)
}

// TestCloseWaitsForCalls checks that closing a backend (a re-Configure
// swaps it) lets a signature in progress finish instead of cancelling it.
func TestCloseWaitsForCalls(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a")
	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatal(err)
	}
	srv.InjectFault(cloudkms.Fault{Method: "AsymmetricSign", Latency: 300 * time.Millisecond, Times: 1})
	done := make(chan error, 1)
	go func() {
		_, err := b.Sign(callCtx(t), g, digestOf(crypto.SHA256, "x"), crypto.SHA256)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	b.Close()
	if err := <-done; err != nil {
		t.Errorf("Sign while the backend closed: %v", err)
	}
}

// TestCreationStampsLastUpdate checks that a CryptoKey carries
// spire-last-update from its creation, written by CreateCryptoKey itself and
// not by a later rotation or liveness pass, so that a server that dies right
// after creating its keys leaves keys other servers can judge stale. The
// other labels of an active key, key_labels included, come with it.
func TestCreationStampsLastUpdate(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a", func(o *Options) { o.Labels = map[string]string{"team": "platform"} })

	srv.ResetCounts()
	before := srv.Clock().Now().Truncate(time.Second)
	g, err := b.Create(callCtx(t), createReq("JWT-Signer-A", engine.ECP256))
	if err != nil {
		t.Fatal(err)
	}
	after := srv.Clock().Now()
	if got := srv.Counts(); got["CreateCryptoKey"] != 1 || got["UpdateCryptoKey"] != 0 {
		t.Errorf("calls = %v, want one CreateCryptoKey and no UpdateCryptoKey", got)
	}

	labels := getKey(t, raw, testRing+"/cryptoKeys/spire-key-server-a-JWT-Signer-A").GetLabels()
	stamp, ok := parseUnixLabel(labels[labelLastUpdate])
	if !ok || stamp.Before(before) || stamp.After(after) {
		t.Errorf("label %s = %q right after creation, want the creation time (between %v and %v)", labelLastUpdate, labels[labelLastUpdate], before, after)
	}
	if !g.Updated.Equal(stamp) {
		t.Errorf("the created generation's Updated = %v, want its stamp %v", g.Updated, stamp)
	}
	for k, v := range map[string]string{labelTrustDomain: trustDomainLabel(testTrustDomain), labelServerID: "server-a", labelActive: "true", "team": "platform"} {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}
}
