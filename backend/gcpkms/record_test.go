package gcpkms

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestCreateRecordsLeaseAndCount checks what a creation records on the
// CryptoKey, for a new key (in CreateCryptoKey itself) and for a rotation
// (in the label update after CreateCryptoKeyVersion): the creator's pending
// lease on the new version, the creation count for it, and a fresh
// spire-last-update; and that the generation returned, the listing and a
// refresh all report them.
func TestCreateRecordsLeaseAndCount(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a")
	key := testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A"
	tests := []struct {
		name    string
		version string
		count   int
		holder  string
	}{
		{"new key", key + "/cryptoKeyVersions/1", 1, "first"},
		{"rotation", key + "/cryptoKeyVersions/2", 4, "second"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lease := engine.Lease{Holder: tt.holder, Renewed: srv.Clock().Now().Truncate(time.Millisecond), Pending: true}
			g, err := b.Create(callCtx(t), engine.CreateRequest{KeyID: "x509-CA-A", Type: engine.ECP256, Lease: lease, RecentCreations: tt.count})
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if g.Ref != tt.version {
				t.Fatalf("created %s, want %s", g.Ref, tt.version)
			}
			labels := getKey(t, raw, key).GetLabels()
			wantLabels := map[string]string{
				labelLeasePrefix + tt.holder: fmt.Sprintf("%s-%d-p", versionNumber(tt.version), lease.Renewed.UnixMilli()),
				labelRecent:                  fmt.Sprintf("%s-%d", versionNumber(tt.version), tt.count),
			}
			for k, v := range wantLabels {
				if labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, labels[k], v)
				}
			}
			stamp, ok := parseUnixLabel(labels[labelLastUpdate])
			if d := srv.Clock().Now().Sub(stamp); !ok || d < 0 || d > time.Minute {
				t.Errorf("spire-last-update = %q, want the creation's time (%v)", labels[labelLastUpdate], srv.Clock().Now())
			}

			lease.Ref = tt.version
			if !hasLease(g.Leases, lease) {
				t.Errorf("created generation's Leases = %v, want %v among them", g.Leases, lease)
			}
			if g.RecentCreations != tt.count || !g.Updated.Equal(stamp) || !maps.Equal(g.Labels, labels) {
				t.Errorf("created generation: RecentCreations %d, Updated %v, Labels %v; want %d, %v, %v", g.RecentCreations, g.Updated, g.Labels, tt.count, stamp, labels)
			}

			gens, err := b.ListGenerations(callCtx(t))
			if err != nil {
				t.Fatalf("ListGenerations: %v", err)
			}
			for _, l := range gens {
				want := 0
				if l.Ref == tt.version {
					want = tt.count
					if !hasLease(l.Leases, lease) {
						t.Errorf("listed %s: Leases = %v, want the pending %v among them", l.Ref, l.Leases, lease)
					}
				}
				if l.RecentCreations != want {
					t.Errorf("listed %s: RecentCreations = %d, want %d", l.Ref, l.RecentCreations, want)
				}
			}
			r, err := b.Refresh(callCtx(t), engine.Generation{KeyID: "x509-CA-A", Ref: tt.version})
			if err != nil || r.RecentCreations != tt.count {
				t.Errorf("Refresh: RecentCreations %d, %v; want %d", r.RecentCreations, err, tt.count)
			}
		})
	}
}

// TestCreateFailsWithoutLeaseRecord checks that a creation whose lease
// record cannot be written fails: the engine never serves a generation
// whose creator's lease is not in the cloud. For a new key the record is
// part of CreateCryptoKey; for a rotation it is the label update after
// CreateCryptoKeyVersion, whose version is then left without a lease.
func TestCreateFailsWithoutLeaseRecord(t *testing.T) {
	tests := []struct {
		name     string
		existing bool // the CryptoKey exists: the creation is a rotation
		method   string
		mention  string
	}{
		{"new key", false, "CreateCryptoKey", "CreateCryptoKey"},
		{"rotation", true, "UpdateCryptoKey", "UpdateCryptoKey"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, raw := startEmulator(t, cloudkms.Options{})
			b := newBackend(t, srv, "server-a")
			if tt.existing {
				if _, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256)); err != nil {
					t.Fatal(err)
				}
			}
			srv.InjectFault(cloudkms.Fault{Method: tt.method, Code: codes.PermissionDenied, Times: 1})
			req := createReq("x509-CA-A", engine.ECP256)
			req.Lease.Holder = "failing"
			_, err := b.Create(callCtx(t), req)
			wantCode(t, err, codes.PermissionDenied, tt.mention, "x509-CA-A")
			if !tt.existing {
				return
			}
			labels := getKey(t, raw, testRing+"/cryptoKeys/spire-key-server-a-x509-CA-A").GetLabels()
			if v, ok := labels[labelLeasePrefix+"failing"]; ok {
				t.Errorf("the failed creation's lease is recorded: %q", v)
			}
		})
	}
}

// TestKeepAliveAndRefreshContract checks the Backend contract on the
// emulator: KeepAlive returns its generation with Updated, Leases and
// Labels as the cloud now holds them (Cloud KMS's answer carries no public
// key or version), Refresh with Updated, Leases and Labels as the cloud
// holds them (Disabled would cost another call: left) and RecentCreations
// as recorded for the version, and every other field exactly as given.
func TestKeepAliveAndRefreshContract(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{})
	b := newBackend(t, srv, "server-a", func(o *Options) { o.Labels = map[string]string{"team": "platform"} })
	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatal(err)
	}
	key := testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A"
	// Markers in the fields the calls must keep, where a backend copying
	// from its answer would overwrite them.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g.Public, g.Version, g.Disabled, g.Algorithm = &other.PublicKey, "marker-version", true, "marker-algorithm"
	g.Created, g.RecentCreations = g.Created.Add(-time.Hour), 7
	srv.Clock().Advance(2 * time.Hour)
	now := srv.Clock().Now().Truncate(time.Millisecond)
	g.Leases = []engine.Lease{
		{Holder: "testproc", Ref: g.Ref, Renewed: now},
		{Holder: "peer", Ref: g.Ref, Renewed: now.Add(-time.Minute)},
	}

	kept, err := b.KeepAlive(callCtx(t), g)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	checkRecord(t, "KeepAlive", kept, getKey(t, raw, key), key)
	if kept.Updated.Before(now.Truncate(time.Second)) {
		t.Errorf("KeepAlive: Updated = %v, want the write's time (%v)", kept.Updated, now)
	}
	sameExcept(t, "KeepAlive", kept, g, "Updated", "Leases", "Labels")

	// Another process writes the record meanwhile.
	srv.Clock().Advance(time.Hour)
	k := getKey(t, raw, key)
	k.Labels[labelLeasePrefix+"later"] = fmt.Sprintf("%s-%d", versionNumber(g.Ref), srv.Clock().Now().UnixMilli())
	k.Labels[labelLastUpdate] = unixLabel(srv.Clock().Now())
	k.Labels["owner"] = "someone-else"
	if _, err := raw.UpdateCryptoKey(callCtx(t), &kmspb.UpdateCryptoKeyRequest{CryptoKey: k, UpdateMask: mask("labels")}); err != nil {
		t.Fatal(err)
	}
	fresh, err := b.Refresh(callCtx(t), kept)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	checkRecord(t, "Refresh", fresh, getKey(t, raw, key), key)
	// The count recorded for the version is part of what Refresh reads.
	if fresh.RecentCreations != 1 {
		t.Errorf("Refresh: RecentCreations = %d, want the recorded 1", fresh.RecentCreations)
	}
	sameExcept(t, "Refresh", fresh, kept, "Updated", "Leases", "Labels", "RecentCreations")
}

// hasLease reports whether leases holds l (times compared as instants).
func hasLease(leases []engine.Lease, l engine.Lease) bool {
	return slices.ContainsFunc(leases, func(o engine.Lease) bool {
		return o.Holder == l.Holder && o.Ref == l.Ref && o.Pending == l.Pending && o.Renewed.Equal(l.Renewed)
	})
}

// checkRecord fails unless g's Updated, Leases and Labels are the lease
// record key holds.
func checkRecord(t *testing.T, call string, g engine.Generation, key *kmspb.CryptoKey, keyName string) {
	t.Helper()
	stamp, _ := parseUnixLabel(key.GetLabels()[labelLastUpdate])
	if !g.Updated.Equal(stamp) {
		t.Errorf("%s: Updated = %v, want the cloud's spire-last-update %v", call, g.Updated, stamp)
	}
	if want := leasesOf(keyName, key.GetLabels()); !reflect.DeepEqual(g.Leases, want) {
		t.Errorf("%s: Leases = %v, want the cloud's %v", call, g.Leases, want)
	}
	if !maps.Equal(g.Labels, key.GetLabels()) {
		t.Errorf("%s: Labels = %v, want the cloud's %v", call, g.Labels, key.GetLabels())
	}
}

// sameExcept fails unless every field of got other than changed equals
// want's: the Backend contract lets a call change only the fields its
// documentation names.
func sameExcept(t *testing.T, call string, got, want engine.Generation, changed ...string) {
	t.Helper()
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if slices.Contains(changed, name) {
			continue
		}
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			t.Errorf("%s changed %s: %v, was %v", call, name, gv.Field(i).Interface(), wv.Field(i).Interface())
		}
	}
}
