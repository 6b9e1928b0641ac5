package reliability

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestGCPRefusedKeyPolicy runs the built binary against a Cloud KMS that
// refuses the key policy, as the service does when the policy names a
// service account that does not exist (issue 16, item 1). The key must never
// serve without the policy it was configured with: each GenerateKey fails
// with InvalidArgument naming the member, and adds no version; once the
// account exists, the next one sets the policy before it adds the version
// it serves; and version 1, made before the refusal and never served, is
// retired by the usual rule.
func TestGCPRefusedKeyPolicy(t *testing.T) {
	h := newHarness(t, setup{name: "gcp", new: newGCPVault})
	v := h.v.(*gcpVault)
	const serverID = "policy-server"
	missing := "signer@kmskeeper-reliability.iam.gserviceaccount.com"
	policy := filepath.Join(t.TempDir(), "policy.json")
	doc := `{"version": 3, "bindings": [{"role": "roles/cloudkms.signerVerifier", "members": ["serviceAccount:` + gcpPlugin + `", "serviceAccount:` + missing + `"]}]}`
	if err := os.WriteFile(policy, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	p := h.start(serverID, "key_policy_file = \""+policy+"\"\ncleanup_interval = \"1s\"\n")
	keyName := gcpKeyRing + "/cryptoKeys/spire-key-" + serverID + "-x509-CA-A"

	for attempt := 1; attempt <= 2; attempt++ {
		_, err := h.generate(p, "x509-CA-A")
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "serviceAccount:"+missing) ||
			!strings.Contains(err.Error(), "Service account "+missing+" does not exist") {
			t.Fatalf("GenerateKey %d with a refused policy: err = %v; want InvalidArgument naming serviceAccount:%s and the service's refusal", attempt, err, missing)
		}
		if keys, err := p.GetPublicKeys(callCtx(t)); err != nil || len(keys) != 0 {
			t.Fatalf("after a refused policy the plugin serves %v (%v), want nothing", keys, err)
		}
		if got := own(v.keys(t), serverID); len(got) != 1 {
			t.Fatalf("attempt %d: %d versions of the key exist, want version 1 alone (no version added without the policy)", attempt, len(got))
		}
	}

	// The account is created: the policy is set, then a version is added.
	if _, err := v.srv.ServiceAccountJSON(missing); err != nil {
		t.Fatal(err)
	}
	pk := h.mustGenerate(p, "x509-CA-A")
	got, err := v.admin.GetIamPolicy(callCtx(t), &iampb.GetIamPolicyRequest{Resource: keyName})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetBindings()) != 1 || !slices.Contains(got.GetBindings()[0].GetMembers(), "serviceAccount:"+missing) {
		t.Fatalf("policy of %s = %v, want key_policy_file's", keyName, got.GetBindings())
	}
	var served key
	for _, k := range own(v.keys(t), serverID) {
		if k.Fingerprint == pk.Fingerprint {
			served = k
		}
	}
	if served.Ref != keyName+"/cryptoKeyVersions/2" {
		t.Fatalf("serves %q, want version 2, made after the policy was set", served.Ref)
	}
	h.mustSignAll(p)

	// Version 1 never served: it is retired once it has settled.
	v1 := keyName + "/cryptoKeyVersions/1"
	v.advance(t, orphanPast)
	waitVault(t, "version 1 to be retired", func() bool {
		_, ok := byRef(own(v.keys(t), serverID))[v1]
		return !ok
	})
	if _, ok := byRef(own(v.keys(t), serverID))[served.Ref]; !ok {
		t.Errorf("the served version %s was retired", served.Ref)
	}
}

// TestGCPServiceDisabled runs the built binary against a project whose Cloud
// KMS API is not enabled (issue 16, item 8): the error says to enable the
// API in that project, not to grant a permission, and the plugin works once
// it is enabled.
func TestGCPServiceDisabled(t *testing.T) {
	h := newHarness(t, setup{name: "gcp", new: newGCPVault})
	v := h.v.(*gcpVault)
	const project = "kmskeeper-reliability"
	v.srv.SetServiceEnabled(project, false)
	p := h.launch()
	// Configure lists the key ring: that is the first call refused.
	err := h.configure(p, "disabled-api", "")
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "enable the Cloud KMS API in project "+project) ||
		strings.Contains(err.Error(), "grant the plugin's identity") {
		t.Fatalf("Configure with the API disabled: err = %v; want PermissionDenied saying to enable the Cloud KMS API in project %s", err, project)
	}
	v.srv.SetServiceEnabled(project, true)
	if err := h.configure(p, "disabled-api", ""); err != nil {
		t.Fatalf("Configure once the API is enabled: %v", err)
	}
	h.mustGenerate(p, "x509-CA-A")
	h.mustSignAll(p)
}
