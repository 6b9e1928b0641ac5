package azurekv

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// TestOtherVersion checks the version check of every signature: the fast
// suffix test must agree with parsing the kid.
func TestOtherVersion(t *testing.T) {
	const want = "0123456789abcdef0123456789abcdef"
	kid := func(s string) *azkeys.ID { id := azkeys.ID(s); return &id }
	for _, tt := range []struct {
		name      string
		kid       *azkeys.ID
		want      string
		other     string
		different bool
	}{
		{"same version", kid("https://v.vault.azure.net/keys/k/" + want), want, "", false},
		{"other version", kid("https://v.vault.azure.net/keys/k/fedcba9876543210fedcba9876543210"), want, "fedcba9876543210fedcba9876543210", true},
		{"version ending like the wanted one", kid("https://v.vault.azure.net/keys/k/x" + want), want, "x" + want, true},
		{"no version in the kid", kid("https://v.vault.azure.net/keys/k"), want, "", false},
		{"no kid", nil, want, "", false},
		{"no version asked for", kid("https://v.vault.azure.net/keys/k/" + want), "", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			other, different := otherVersion(tt.kid, tt.want)
			if other != tt.other || different != tt.different {
				t.Errorf("otherVersion(%v, %q) = %q, %v; want %q, %v", tt.kid, tt.want, other, different, tt.other, tt.different)
			}
		})
	}
}
