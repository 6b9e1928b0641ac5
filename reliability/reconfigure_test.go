package reliability

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
)

// TestReconfigure re-configures a running plugin as SPIRE does on SIGUSR1
// with plugin_data_file, while it signs without pause: limits and timings
// apply live; moving the vault or changing the identity or trust domain is
// refused with FailedPrecondition naming the change, and the running key set
// keeps signing and rotating in the original vault.
func TestReconfigure(t *testing.T) {
	forEachSetup(t, func(t *testing.T, s setup) {
		h := newHarness(t, s)
		const id = "server-r"
		p := h.start(id, "max_key_creations_per_hour = 2\n")
		pk := h.mustGenerate(p, "x509-CA-A")
		h.mustGenerate(p, "x509-CA-A") // the second creation of the hour
		pk = mustGetPublicKey(t, h, p, "x509-CA-A")
		if _, err := h.generate(p, "x509-CA-A"); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a third creation under max_key_creations_per_hour = 2 = %v, want ResourceExhausted", err)
		}

		// Sign continuously with the JWT key through every re-Configure.
		jwt := h.mustGenerate(p, "JWT-Signer-A")
		ctx, stop := context.WithCancel(t.Context())
		var signed atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := h.sign(callCtx(t), p, jwt); err != nil {
					t.Errorf("SignData during re-Configure: %v", err)
					return
				}
				signed.Add(1)
			}
		}()

		t.Run("limit applies live", func(t *testing.T) {
			if err := h.configure(p, id, "max_key_creations_per_hour = 5\n"); err != nil {
				t.Fatalf("re-Configure: %v", err)
			}
			next, err := h.generate(p, "x509-CA-A")
			if err != nil {
				t.Fatalf("GenerateKey under the raised limit: %v", err)
			}
			pk = next
		})
		t.Run("timings apply live", func(t *testing.T) {
			// The defaults (a day, six hours) ran no pass so far.
			if n := countLogs(p, cleanupDone) + countLogs(p, livenessDone); n != 0 {
				t.Fatalf("%d passes ran before the intervals were shortened", n)
			}
			if err := h.configure(p, id, "max_key_creations_per_hour = 5\ncleanup_interval = \"1s\"\nliveness_interval = \"1s\"\n"); err != nil {
				t.Fatalf("re-Configure: %v", err)
			}
			waitPasses(t, p, cleanupDone, 0, 1)
			waitPasses(t, p, livenessDone, 0, 1)
		})

		refused := []struct {
			name, trustDomain, hcl, wantIn string
		}{
			{"another vault", trustDomain, h.v.elsewhere(t, id), "location"},
			{"another server ID", trustDomain, h.v.pluginData("server-other", ""), "server ID"},
			{"another trust domain", "other.org", h.v.pluginData(id, ""), "trust domain"},
		}
		for _, extra := range h.v.otherIdentities(t, id) {
			refused = append(refused, struct{ name, trustDomain, hcl, wantIn string }{"another identity", trustDomain, extra, "changed"})
		}
		before := len(h.v.keys(t))
		for _, tt := range refused {
			t.Run("refused/"+tt.name, func(t *testing.T) {
				err := h.record(p.Configure(callCtx(t), tt.trustDomain, tt.hcl))
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tt.wantIn) {
					t.Fatalf("re-Configure = %v, want FailedPrecondition naming %q", err, tt.wantIn)
				}
				if got := mustGetPublicKey(t, h, p, "x509-CA-A"); got.Fingerprint != pk.Fingerprint {
					t.Errorf("after a refused re-Configure x509-CA-A is %s, want %s", got.Fingerprint, pk.Fingerprint)
				}
				if err := h.sign(callCtx(t), p, pk); err != nil {
					t.Errorf("after a refused re-Configure: %v", err)
				}
			})
		}
		// Rotation still goes to the original vault.
		next := h.mustGenerate(p, "x509-CA-B")
		found := false
		for _, k := range own(h.v.keys(t), id) {
			found = found || k.Fingerprint == next.Fingerprint
		}
		if !found {
			t.Errorf("after refused re-Configures the new key %s is not in the original vault (%d keys before)", next.Fingerprint, before)
		}
		stop()
		wg.Wait()
		if signed.Load() == 0 {
			t.Error("no signature completed while re-configuring")
		}
	})
}

func mustGetPublicKey(t *testing.T, h *harness, p interface {
	GetPublicKey(context.Context, string) (engine.PublicKey, error)
}, id string) engine.PublicKey {
	t.Helper()
	pk, err := p.GetPublicKey(callCtx(t), id)
	if err != nil {
		t.Fatalf("GetPublicKey(%s): %v", id, h.record(err))
	}
	return pk
}

// metadataSetting names, per cloud setup, the setting that puts the
// operator's own metadata on every key the plugin creates.
var metadataSetting = map[string]string{"azure": "key_tags", "gcp": "key_labels"}

// TestReconfigureKeyMetadata changes key_tags (Key Vault) or key_labels
// (Cloud KMS) with a re-Configure of the running binary, as a SIGUSR1 reload
// of plugin_data_file does: the change is accepted without a restart, and
// the keys created from then on carry the new metadata, both a rotation of a
// key ID that existed before and a key ID created for the first time.
func TestReconfigureKeyMetadata(t *testing.T) {
	forSetups(t, cloudSetups(), func(t *testing.T, s setup) {
		setting, ok := metadataSetting[s.name]
		if !ok {
			t.Fatalf("no key metadata setting known for setup %s", s.name)
		}
		h := newHarness(t, s)
		const id = "server-m"
		p := h.start(id, setting+" = { owner = \"team-a\" }\n")
		before := h.mustGenerate(p, "x509-CA-A")
		wantMeta(t, h, id, "before the re-Configure", before, map[string]string{"owner": "team-a"})

		if err := h.configure(p, id, setting+" = { owner = \"team-b\", cost = \"c1\" }\n"); err != nil {
			t.Fatalf("re-Configure changing %s: %v", setting, err)
		}
		if got := mustGetPublicKey(t, h, p, "x509-CA-A"); got.Fingerprint != before.Fingerprint {
			t.Errorf("after the re-Configure x509-CA-A is %s, want the key in use %s", got.Fingerprint, before.Fingerprint)
		}
		want := map[string]string{"owner": "team-b", "cost": "c1"}
		rotated := h.mustGenerate(p, "x509-CA-A")
		wantMeta(t, h, id, "a rotation after the re-Configure", rotated, want)
		created := h.mustGenerate(p, "JWT-Signer-A")
		wantMeta(t, h, id, "a new key ID after the re-Configure", created, want)
		for _, pk := range []engine.PublicKey{rotated, created} {
			if err := h.sign(callCtx(t), p, pk); err != nil {
				t.Errorf("SignData with %s: %v", pk.ID, err)
			}
		}
	})
}

// wantMeta checks that the vault holds pk for serverID with every entry of
// want among its tags or labels.
func wantMeta(t *testing.T, h *harness, serverID, what string, pk engine.PublicKey, want map[string]string) {
	t.Helper()
	for _, k := range own(h.v.keys(t), serverID) {
		if k.Fingerprint != pk.Fingerprint {
			continue
		}
		for name, v := range want {
			if k.Meta[name] != v {
				t.Errorf("%s: key %s (%s) has %s = %q, want %q (all: %v)", what, pk.ID, k.Ref, name, k.Meta[name], v, k.Meta)
			}
		}
		return
	}
	t.Errorf("%s: key %s (%s) is not in the vault", what, pk.ID, pk.Fingerprint)
}
