package gcpkms

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"cloud.google.com/go/iam/apiv1/iampb"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// ringPermissions are what the plugin's service account holds on the key
// ring in these tests: everything but using keys, which the key policy the
// plugin sets on each key it creates must grant.
var ringPermissions = []string{
	"cloudkms.cryptoKeys.create", "cloudkms.cryptoKeys.get", "cloudkms.cryptoKeys.list",
	"cloudkms.cryptoKeys.update", "cloudkms.cryptoKeys.setIamPolicy",
	"cloudkms.cryptoKeyVersions.create", "cloudkms.cryptoKeyVersions.destroy",
	"cloudkms.cryptoKeyVersions.get", "cloudkms.cryptoKeyVersions.list",
}

const pluginAccount = "spire-server@kmskeeper-test.iam.gserviceaccount.com"

// openWithServiceAccount opens the backend as plugin_data would: endpoint
// and service_account_file, through Config.Check and Config.Open.
func openWithServiceAccount(t *testing.T, srv *cloudkms.Server, policyFile string) engine.Backend {
	t.Helper()
	sa := filepath.Join(t.TempDir(), "sa.json")
	if err := srv.WriteServiceAccountFile(pluginAccount, sa); err != nil {
		t.Fatal(err)
	}
	c := &Config{KeyRing: testRing, Endpoint: srv.Addr(), ServiceAccountFile: sa, KeyPolicyFile: policyFile}
	if err := c.Check(testTrustDomain); err != nil {
		t.Fatalf("Check: %v", err)
	}
	b, err := c.Open(context.Background(), config.OpenParams{TrustDomain: testTrustDomain, ServerID: "server-a"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.(*Backend).Close() })
	return b
}

// TestDefaultKeyPolicy checks that a created key gets the default policy,
// binding the service account named in service_account_file (no tokeninfo
// call) to roles/cloudkms.signerVerifier, and that this is what lets the
// plugin use the key.
func TestDefaultKeyPolicy(t *testing.T) {
	srv, raw := startEmulator(t, cloudkms.Options{Principals: map[string][]string{pluginAccount: ringPermissions, "admin@kmskeeper-test.iam.gserviceaccount.com": {"*"}}})
	b := openWithServiceAccount(t, srv, "")
	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := b.Sign(callCtx(t), g, digestOf(sha256Hash, "x"), sha256Hash); err != nil {
		t.Fatalf("Sign with the key policy's grant: %v", err)
	}
	_ = raw
	admin := adminClient(t, srv)
	p, err := admin.GetIamPolicy(callCtx(t), &iampb.GetIamPolicyRequest{Resource: testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.GetBindings()) != 1 || p.GetBindings()[0].GetRole() != signerVerifierRole || p.GetBindings()[0].GetMembers()[0] != "serviceAccount:"+pluginAccount {
		t.Errorf("key policy = %v, want %s bound to serviceAccount:%s", p.GetBindings(), signerVerifierRole, pluginAccount)
	}
	if n := srv.Counts()["GetIamPolicy"]; n != 1 {
		t.Errorf("GetIamPolicy called %d times, want only the test's", n)
	}
}

// TestKeyPolicyFile checks that key_policy_file replaces the default policy,
// and that a denial names the missing permission and the key.
func TestKeyPolicyFile(t *testing.T) {
	srv, _ := startEmulator(t, cloudkms.Options{Principals: map[string][]string{pluginAccount: ringPermissions, "admin@kmskeeper-test.iam.gserviceaccount.com": {"*"}}})
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"bindings":[{"role":"roles/cloudkms.publicKeyViewer","members":["serviceAccount:`+pluginAccount+`"]}],"version":3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	b := openWithServiceAccount(t, srv, policy)
	g, err := b.Create(callCtx(t), createReq("x509-CA-A", engine.ECP256))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	_, err = b.Sign(callCtx(t), g, digestOf(sha256Hash, "x"), sha256Hash)
	wantCode(t, err, codes.PermissionDenied, "cloudkms.cryptoKeyVersions.useToSign", g.Ref)
	p, err := adminClient(t, srv).GetIamPolicy(callCtx(t), &iampb.GetIamPolicyRequest{Resource: testRing + "/cryptoKeys/spire-key-server-a-x509-CA-A"})
	if err != nil || len(p.GetBindings()) != 1 || p.GetBindings()[0].GetRole() != "roles/cloudkms.publicKeyViewer" {
		t.Errorf("key policy = %v, %v; want the file's", p.GetBindings(), err)
	}
}
