package gcpkms

import (
	"fmt"
	"strings"
	"testing"
)

// TestCheckUserLabelsCount checks that key_labels leaves room on a key for
// the plugin's own labels: Cloud KMS's 64 less the five fixed ones and the
// leases.
func TestCheckUserLabelsCount(t *testing.T) {
	labels := func(n int) map[string]string {
		out := map[string]string{}
		for i := range n {
			out[fmt.Sprintf("l%d", i)] = "v"
		}
		return out
	}
	fit := maxLabels - ownLabels
	tests := []struct {
		name    string
		n       int
		wantErr string
	}{
		{"none", 0, ""},
		{"as many as fit", fit, ""},
		{"one too many", fit + 1, fmt.Sprintf("up to %d of its own (5, and up to 6 serving leases), so at most %d fit", ownLabels, fit)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkUserLabels(labels(tt.n))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkUserLabels(%d labels) = %v, want nil", tt.n, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("checkUserLabels(%d labels) = %v, want an error containing %q", tt.n, err, tt.wantErr)
			}
		})
	}
	if fit != 53 {
		t.Errorf("key_labels may hold %d labels; docs/configuration.md and docs/troubleshooting.md say 53", fit)
	}
}
