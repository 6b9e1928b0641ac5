package reliability

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPlaintextRefused configures the built plugin with vault URLs and
// Cloud KMS endpoints that would carry requests and credentials in the
// clear: each is refused at Configure with InvalidArgument and a message
// that says why, before any request leaves the process, and without echoing
// the credentials of the same plugin_data.
func TestPlaintextRefused(t *testing.T) {
	const secret = "app-secret-never-echoed~Reliability7"
	az := newAzureVault(t).(*azureVault)
	gcp := newGCPVault(t).(*gcpVault)
	// The emulators' own addresses, so that a request let through would be
	// seen in their counters.
	azHost := strings.TrimSuffix(strings.TrimPrefix(az.srv.VaultURL("kmskeeper"), "https://"), "/")
	azureData := func(uri string) string {
		return fmt.Sprintf("key_vault_uri = %q\ntenant_id = %q\napp_id = %q\napp_secret = %q\nkey_identifier_value = \"server-p\"\n",
			uri, az.srv.TenantID(), az.srv.ClientID(), secret)
	}
	gcpData := func(endpoint string) string {
		return fmt.Sprintf("key_ring = %q\nendpoint = %q\nservice_account_file = %q\nkey_identifier_value = \"server-p\"\n",
			gcpKeyRing, endpoint, gcp.saFile[gcpPlugin])
	}
	tests := []struct {
		name, hcl string
		wantIn    string
	}{
		{"azure/http to the emulator", azureData("http://" + azHost + "/"), "must start with https://"},
		{"azure/http to a vault", azureData("http://my-vault.vault.azure.net/"), "must start with https://"},
		{"azure/HTTP upper case", azureData("HTTP://my-vault.vault.azure.net/"), "must start with https://"},
		{"azure/no scheme", azureData("my-vault.vault.azure.net"), "must start with https://"},
		{"gcp/http to a private address", gcpData("http://10.20.30.40:9010"), "not a loopback address"},
		{"gcp/http to a host name", gcpData("http://kms.internal.example.com:443"), "not a loopback address"},
		{"gcp/http to a public address", gcpData("http://8.8.8.8:443"), "not a loopback address"},
		{"gcp/http to a name that only looks local", gcpData("http://localhost.example.com:9010"), "not a loopback address"},
	}
	h := newHarness(t, setup{name: "azure", new: func(*testing.T) vault { return az }})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := h.launch()
			err := h.configureData(p, tt.hcl)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("Configure = %v, want InvalidArgument saying %q", err, tt.wantIn)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the refusal repeats app_secret: %v", err)
			}
			for _, l := range p.Logs() {
				if strings.Contains(l.Raw, secret) {
					t.Errorf("a log line repeats app_secret: %s", l.Raw)
				}
			}
		})
	}
	for name, counts := range map[string]map[string]int{"Key Vault": az.srv.Counts(), "Cloud KMS": gcp.srv.Counts()} {
		for op, n := range counts {
			if n > 0 {
				t.Errorf("the %s emulator received %d %s requests from a refused configuration", name, n, op)
			}
		}
	}
}
