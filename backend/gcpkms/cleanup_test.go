package gcpkms

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestCleanupStaleServers moves the emulator clock (and the engine's) past
// 14 days: keys of servers that stopped keeping them alive get their enabled
// versions destroyed and are labelled spire-active=false, including a key
// the built-in plugin left without spire-last-update; a server that kept its
// key alive and this server's own keys are untouched.
func TestCleanupStaleServers(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	gone := newManager(t, srv, newBackend(t, srv, "server-gone"), "server-gone", nil)
	for _, id := range []string{"x509-CA-A", "JWT-Signer-A"} {
		if _, err := gone.GenerateKey(callCtx(t), id, engine.ECP256); err != nil {
			t.Fatal(err)
		}
	}
	builtin := testRing + "/cryptoKeys/spire-key-server-builtin-x509-CA-A"
	if _, err := srv.SeedCryptoKey(cloudkms.SeedKey{
		Name: builtin, Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, Labels: builtinLabels("server-builtin"),
		Versions: []cloudkms.SeedVersion{{}, {}},
	}); err != nil {
		t.Fatal(err)
	}
	aliveBackend := newBackend(t, srv, "server-alive")
	alive := newManager(t, srv, aliveBackend, "server-alive", nil)
	if _, err := alive.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatal(err)
	}
	self := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	if _, err := self.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatal(err)
	}

	srv.Clock().Advance(15 * 24 * time.Hour)
	if err := alive.KeepAlive(callCtx(t)); err != nil {
		t.Fatalf("liveness of the live server: %v", err)
	}
	// A built-in server that restarts more often than its 6-hour liveness
	// pass never labels its keys: an old CryptoKey with a recent version is
	// not stale.
	now := srv.Clock().Now()
	restarting := testRing + "/cryptoKeys/spire-key-server-restarting-x509-CA-A"
	if _, err := srv.SeedCryptoKey(cloudkms.SeedKey{
		Name: restarting, Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, Labels: builtinLabels("server-restarting"),
		CreateTime: now.Add(-60 * 24 * time.Hour),
		Versions: []cloudkms.SeedVersion{
			{State: kmspb.CryptoKeyVersion_DESTROY_SCHEDULED, CreateTime: now.Add(-60 * 24 * time.Hour)},
			{CreateTime: now.Add(-24 * time.Hour)},
		},
	}); err != nil {
		t.Fatal(err)
	}

	as, err := self.Cleanup(callCtx(t), true)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	states := map[string]engine.State{}
	for _, a := range as {
		states[a.Ref] = a.State
	}
	key := func(server, id string) string { return testRing + "/cryptoKeys/spire-key-" + server + "-" + id }
	for ref, want := range map[string]engine.State{
		key("server-gone", "x509-CA-A"):                       engine.StateStale,
		key("server-gone", "JWT-Signer-A"):                    engine.StateStale,
		builtin:                                               engine.StateStale,
		key("server-alive", "x509-CA-A"):                      engine.StateForeign,
		key("server-a", "x509-CA-A") + "/cryptoKeyVersions/1": engine.StateInUse,
	} {
		if states[ref] != want {
			t.Errorf("%s assessed %q, want %q (all: %v)", ref, states[ref], want, states)
		}
	}
	for _, k := range []string{key("server-gone", "x509-CA-A"), key("server-gone", "JWT-Signer-A"), builtin} {
		for v, st := range versions(t, raw, k) {
			if st != kmspb.CryptoKeyVersion_DESTROY_SCHEDULED {
				t.Errorf("stale %s is %v, want DESTROY_SCHEDULED", v, st)
			}
		}
		if l := getKey(t, raw, k).GetLabels()[labelActive]; l != "false" {
			t.Errorf("stale %s spire-active = %q, want false", k, l)
		}
	}
	for _, v := range []string{key("server-alive", "x509-CA-A") + "/cryptoKeyVersions/1", key("server-a", "x509-CA-A") + "/cryptoKeyVersions/1", restarting + "/cryptoKeyVersions/2"} {
		k, _ := keyOfVersion(v)
		if st := versions(t, raw, k)[v]; st != kmspb.CryptoKeyVersion_ENABLED {
			t.Errorf("%s is %v, want ENABLED", v, st)
		}
	}

	// Retired keys are no longer listed: the next pass has nothing to do.
	as, err = self.Cleanup(callCtx(t), true)
	if err != nil || len(as) != 3 {
		t.Errorf("second cleanup listed %d generations (%v), want 3 (own and the live servers')", len(as), err)
	}
}

// TestTwoServersShareKeyRing runs two servers with the same key IDs in one
// key ring: each serves and rotates only its own keys, sees the other's as
// one generation per CryptoKey, and retires nothing of the other's.
func TestTwoServersShareKeyRing(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	a := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	b := newManager(t, srv, newBackend(t, srv, "server-b"), "server-b", nil)
	a.Start()
	b.Start()
	fp := map[string]string{}
	for name, m := range map[string]*engine.Manager{"a": a, "b": b} {
		for range 2 { // generate, then rotate
			pk, err := m.GenerateKey(callCtx(t), "x509-CA-A", engine.ECP256)
			if err != nil {
				t.Fatal(err)
			}
			fp[name] = pk.Fingerprint
		}
	}
	if fp["a"] == fp["b"] {
		t.Fatal("the servers share a key")
	}
	for name, m := range map[string]*engine.Manager{"a": a, "b": b} {
		as, err := m.Cleanup(callCtx(t), true)
		if err != nil {
			t.Fatalf("server %s cleanup: %v", name, err)
		}
		for _, x := range as {
			if x.ServerID != "server-"+name && (x.State != engine.StateForeign || isVersionName(x.Ref)) {
				t.Errorf("server %s sees %s as %q, want one foreign generation per CryptoKey", name, x.Ref, x.State)
			}
		}
	}
	for _, server := range []string{"server-a", "server-b"} {
		k := testRing + "/cryptoKeys/spire-key-" + server + "-x509-CA-A"
		waitFor(t, server+"'s superseded version to be destroyed by its own server", func() bool {
			runTasks(t, srv, a, b)
			vs := versions(t, raw, k)
			return vs[k+"/cryptoKeyVersions/1"] == kmspb.CryptoKeyVersion_DESTROY_SCHEDULED && vs[k+"/cryptoKeyVersions/2"] == kmspb.CryptoKeyVersion_ENABLED
		})
	}
	for name, m := range map[string]*engine.Manager{"a": a, "b": b} {
		if pk, err := m.GetPublicKey(callCtx(t), "x509-CA-A"); err != nil || pk.Fingerprint != fp[name] {
			t.Errorf("server %s serves %s, %v; want its own %s", name, pk.Fingerprint, err, fp[name])
		}
	}
}

// TestPacing checks that background writes beyond the burst wait for the
// pacer, and give up at once when the wait would outlast the deadline.
func TestPacing(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a", func(o *Options) { o.WriteInterval = time.Hour })
	for range writeBurst {
		if err := b.pace(callCtx(t), "test write"); err != nil {
			t.Fatalf("write within the burst: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	wantCode(t, b.pace(ctx, "test write"), codes.ResourceExhausted, "60 writes a minute")
	if time.Since(start) > 100*time.Millisecond {
		t.Error("the pacer waited although the slot is past the deadline")
	}
}

// TestLiveness checks the liveness pass: keys whose spire-last-update is
// older than a day get it refreshed (one read and one write each, labels set
// by others kept); fresh keys cost nothing.
func TestLiveness(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	m := newManager(t, srv, newBackend(t, srv, "server-a", func(o *Options) { o.Labels = map[string]string{"team": "platform"} }), "server-a", nil)
	for _, k := range spireKeys {
		if _, err := m.GenerateKey(callCtx(t), k.id, k.t); err != nil {
			t.Fatal(err)
		}
	}
	key := testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A"
	k := getKey(t, raw, key)
	k.Labels["owner"] = "someone-else"
	if _, err := raw.UpdateCryptoKey(callCtx(t), &kmspb.UpdateCryptoKeyRequest{CryptoKey: k, UpdateMask: mask("labels")}); err != nil {
		t.Fatal(err)
	}

	srv.ResetCounts()
	if err := m.KeepAlive(callCtx(t)); err != nil || len(srv.Counts()) != 0 {
		t.Fatalf("liveness of fresh keys: %v, calls %v; want none", err, srv.Counts())
	}
	srv.Clock().Advance(48 * time.Hour)
	if err := m.KeepAlive(callCtx(t)); err != nil {
		t.Fatal(err)
	}
	if got := srv.Counts(); got["GetCryptoKey"] != len(spireKeys) || got["UpdateCryptoKey"] != len(spireKeys) || len(got) != 2 {
		t.Errorf("liveness calls = %v, want one GetCryptoKey and one UpdateCryptoKey per key", got)
	}
	labels := getKey(t, raw, key).GetLabels()
	// The stamp is a lower bound of the cloud's time, to the second.
	if ts, _ := parseUnixLabel(labels[labelLastUpdate]); srv.Clock().Now().Sub(ts) < 0 || srv.Clock().Now().Sub(ts) > 2*time.Second {
		t.Errorf("spire-last-update = %v, want %v", ts, srv.Clock().Now())
	}
	if labels["owner"] != "someone-else" || labels["team"] != "platform" {
		t.Errorf("labels = %v, want others' and key_labels kept", labels)
	}
	srv.ResetCounts()
	if err := m.KeepAlive(callCtx(t)); err != nil || len(srv.Counts()) != 0 {
		t.Errorf("second liveness pass: %v, calls %v; want none", err, srv.Counts())
	}
}

// TestCleanupSparesRecentVersions checks that a key whose liveness stamp is
// past the stale period but which got a version within it (its server came
// back and rotated) is left alone.
func TestCleanupSparesRecentVersions(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	now := srv.Clock().Now()
	labels := builtinLabels("server-back")
	labels[labelLastUpdate] = unixLabel(now.Add(-20 * 24 * time.Hour))
	name := testRing + "/cryptoKeys/spire-key-server-back-x509-CA-A"
	if _, err := srv.SeedCryptoKey(cloudkms.SeedKey{
		Name: name, Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, Labels: labels, CreateTime: now.Add(-30 * 24 * time.Hour),
		Versions: []cloudkms.SeedVersion{{CreateTime: now.Add(-time.Hour)}},
	}); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, srv, newBackend(t, srv, "server-a"), "server-a", nil)
	_, err := m.Cleanup(callCtx(t), true)
	wantCode(t, err, codes.Aborted, "after it was listed as stale")
	if st := versions(t, raw, name)[name+"/cryptoKeyVersions/1"]; st != kmspb.CryptoKeyVersion_ENABLED {
		t.Errorf("the recent version is %v, want ENABLED", st)
	}
}
