package azurekv

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestGenerationContract checks, on the emulator, what each backend call
// returns of a generation (engine.Backend's contract): Create and
// ListGenerations return the whole generation as the vault holds it, the
// pending lease and the creation count included; Fetch, KeepAlive and
// Refresh change only the fields their documentation names, set to what the
// vault holds, and return every other field of the generation passed in as
// it was, however odd (the inputs carry sentinel values there).
func TestGenerationContract(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	b, _ := openBackend(t, testConfig(t, srv, keyvault.DefaultVaultName, nil), "server-a")
	raw := rawClient(t, srv, keyvault.DefaultVaultName)
	// vault reads the key as the vault holds it now, through the plain SDK.
	vault := func(ref string) engine.Generation {
		t.Helper()
		resp, err := raw.GetKey(callCtx(t), ref, "", nil)
		if err != nil {
			t.Fatalf("GetKey(%s): %v", ref, err)
		}
		m, err := materialOf(resp.KeyBundle, ref)
		if err != nil {
			t.Fatal(err)
		}
		r := recordOf(resp.Tags, resp.Attributes, ref)
		return engine.Generation{
			Ref: ref, Version: m.version, Created: r.created, Updated: r.updated, Type: m.typ, Public: m.public,
			Disabled: r.disabled, Leases: r.leases, Labels: r.labels, RecentCreations: r.recent,
		}
	}

	pendingLease := testLease()
	g, err := b.Create(callCtx(t), engine.CreateRequest{KeyID: "x509-CA-A", Type: engine.ECP256, Lease: pendingLease, RecentCreations: 3})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	ref := g.Ref
	pendingLease.Ref = ref
	held := vault(ref)
	want := held
	want.KeyID, want.ServerID = "x509-CA-A", "server-a"
	if !reflect.DeepEqual(comparable(g), comparable(want)) {
		t.Errorf("Create returned\n%+v\nthe vault holds\n%+v", g, want)
	}
	if !reflect.DeepEqual(g.Leases, []engine.Lease{pendingLease}) || g.RecentCreations != 3 {
		t.Errorf("Create recorded leases %v and count %d, want the pending lease %v and 3", g.Leases, g.RecentCreations, pendingLease)
	}
	if g.Created.IsZero() || g.Updated.IsZero() || g.Public == nil || g.Version == "" {
		t.Errorf("Create returned an incomplete generation %+v", g)
	}

	gens, err := b.ListGenerations(callCtx(t))
	if err != nil || len(gens) != 1 {
		t.Fatalf("ListGenerations = %v, %v; want the one key", gens, err)
	}
	listed := gens[0]
	want.Version, want.Type, want.Public = "", engine.KeyTypeUnspecified, nil // the listing cannot tell
	if !reflect.DeepEqual(comparable(listed), comparable(want)) {
		t.Errorf("ListGenerations returned\n%+v\nwant\n%+v", listed, want)
	}

	// sentinel returns g with every field but Ref and keep set to a value
	// no call could have read from the vault.
	sentinel := func(g engine.Generation, keep ...string) engine.Generation {
		s := engine.Generation{
			KeyID: "sentinel-key-id", Ref: g.Ref, Version: "sentinel-version", ServerID: "sentinel-server",
			Created: time.Unix(1_000_000_000, 0), Updated: time.Unix(1_000_000_001, 0),
			Type: engine.RSA4096, Public: &rsa.PublicKey{N: big.NewInt(3233), E: 17},
			Disabled: true, Algorithm: "sentinel-algorithm",
			Leases:          []engine.Lease{{Holder: "sentinel", Ref: g.Ref, Renewed: time.Unix(1_000_000_002, 0)}},
			Labels:          map[string]string{"sentinel": "label"},
			RecentCreations: 7,
		}
		sv, gv := reflect.ValueOf(&s).Elem(), reflect.ValueOf(g)
		for _, name := range keep {
			sv.FieldByName(name).Set(gv.FieldByName(name))
		}
		return s
	}
	committed := engine.Lease{Holder: "testproc", Ref: ref, Renewed: time.Now().Truncate(time.Millisecond)}
	commit := listed
	commit.Leases = []engine.Lease{committed}

	for _, tt := range []struct {
		name  string
		call  func(context.Context, engine.Generation) (engine.Generation, error)
		in    engine.Generation
		named []string // the fields the call may change
	}{
		{"Fetch", b.Fetch, sentinel(listed), []string{"Public", "Type", "Version", "Disabled"}},
		{"Fetch of a generation without a count", b.Fetch, withCount(sentinel(listed), 0), []string{"Public", "Type", "Version", "Disabled", "RecentCreations"}},
		// KeepAlive writes the key ID's tags, the leases, the other tags
		// and the count from what it is given: those are real.
		{"KeepAlive", b.KeepAlive, sentinel(commit, "KeyID", "Leases", "Labels", "RecentCreations"), []string{"Updated", "Leases", "Labels", "Public", "Version"}},
		{"KeepAlive of a generation without a count", b.KeepAlive, withCount(sentinel(commit, "KeyID", "Leases", "Labels"), 0), []string{"Updated", "Leases", "Labels", "Public", "Version", "RecentCreations"}},
		{"Refresh", b.Refresh, sentinel(listed), []string{"Updated", "Leases", "Labels", "Disabled"}},
		{"Refresh of a generation without a count", b.Refresh, withCount(sentinel(listed), 0), []string{"Updated", "Leases", "Labels", "Disabled", "RecentCreations"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv.Clock().Advance(time.Minute) // a write moves Updated visibly
			out, err := tt.call(callCtx(t), tt.in)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			changed := changedFields(tt.in, out)
			for _, f := range changed {
				if !slices.Contains(tt.named, f) {
					t.Errorf("%s changed %s from %v to %v; only %v may change", tt.name, f, field(tt.in, f), field(out, f), tt.named)
				}
			}
			now := vault(ref)
			for _, f := range tt.named {
				if got, want := field(out, f), field(now, f); !reflect.DeepEqual(comparableField(got), comparableField(want)) {
					t.Errorf("%s returned %s = %v, the vault holds %v", tt.name, f, got, want)
				}
			}
			if now.RecentCreations != 3 {
				t.Errorf("the vault's count is %d after %s, want 3 as created", now.RecentCreations, tt.name)
			}
		})
	}
	// The keep-alives committed the lease: the pending one is gone.
	if got := vault(ref).Leases; !reflect.DeepEqual(got, []engine.Lease{committed}) {
		t.Errorf("leases after the keep-alives %v, want only the committed %v", got, committed)
	}
}

// withCount returns g with creation count n.
func withCount(g engine.Generation, n int) engine.Generation {
	g.RecentCreations = n
	return g
}

// changedFields names the fields of a generation that differ between in
// and out, exactly: a field a call kept is the very value passed in.
func changedFields(in, out engine.Generation) []string {
	iv, ov := reflect.ValueOf(in), reflect.ValueOf(out)
	var changed []string
	for i := range iv.NumField() {
		if !reflect.DeepEqual(iv.Field(i).Interface(), ov.Field(i).Interface()) {
			changed = append(changed, iv.Type().Field(i).Name)
		}
	}
	return changed
}

// field returns the value of g's field name.
func field(g engine.Generation, name string) any {
	return reflect.ValueOf(g).FieldByName(name).Interface()
}

// comparableField returns a field's value in a form reflect.DeepEqual
// compares by meaning: times as instants, public keys as PKIX DER.
func comparableField(v any) any {
	switch v := v.(type) {
	case time.Time:
		return v.UnixNano()
	case *ecdsa.PublicKey, *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(v)
		if err != nil {
			return err.Error()
		}
		return der
	}
	return v
}

// comparable returns every field of g in comparableField's form.
func comparable(g engine.Generation) map[string]any {
	gv := reflect.ValueOf(g)
	out := make(map[string]any, gv.NumField())
	for i := range gv.NumField() {
		out[gv.Type().Field(i).Name] = comparableField(gv.Field(i).Interface())
	}
	return out
}
