package azurekv

import (
	"strings"
	"testing"
)

func TestKeyNames(t *testing.T) {
	for _, id := range []string{"x509-CA-A", "JWT-Signer-B", "WIT-Signer-A", "conformance-EC_P256", "a/b c", strings.Repeat("k", 200)} {
		name := keyName(id)
		if len(name) > maxKeyNameLen {
			t.Errorf("keyName(%q) is %d characters long", id, len(name))
		}
		tags := keyTags(nil, testTD, "server-1", id)
		got, problem := parseKey(name, tags, testTD)
		if problem != "" || got.keyID != id || got.serverID != "server-1" {
			t.Errorf("parseKey(keyName(%q)) = %+v, %q", id, got, problem)
		}
		if _, extra := tags[tagKeyID]; extra == nameSafe(id) {
			t.Errorf("key ID %q: spire-key-id tag present = %v, want %v", id, extra, !nameSafe(id))
		}
	}
	// The built-in plugin's names parse with its fixed offset.
	if got, _ := parseKey("spire-key-1b4e28ba-2fa1-41d2-883f-0016d3cca427-x509-CA-A", keyTags(nil, testTD, "s", "x509-CA-A"), testTD); got.keyID != "x509-CA-A" {
		t.Errorf("built-in name parsed as %+v", got)
	}
}

// TestKeyNamesOrdered checks that names of successive generations sort in
// creation order: the engine breaks ties between generations created in the
// same second (Key Vault's resolution) by name.
func TestKeyNamesOrdered(t *testing.T) {
	prev := keyName("x509-CA-A")
	for range 1000 {
		next := keyName("x509-CA-A")
		if next <= prev {
			t.Fatalf("keyName gave %s after %s: not in creation order", next, prev)
		}
		prev = next
	}
}

// TestParseKeyOddKeys checks that keys which are not ours, or are ours but
// malformed, never crash the listing (the built-in plugin dereferences a
// missing spire-server-id tag).
func TestParseKeyOddKeys(t *testing.T) {
	s := func(v string) *string { return &v }
	good := "spire-key-1b4e28ba-2fa1-41d2-883f-0016d3cca427-x509-CA-A"
	tests := []struct {
		name        string
		key         string
		tags        map[string]*string
		wantProblem bool
	}{
		{"other trust domain", good, map[string]*string{tagTrustDomain: s("other.org"), tagServerID: s("x")}, false},
		{"no tags", good, nil, false},
		{"not our prefix", "my-key", map[string]*string{tagTrustDomain: s(testTD)}, false},
		{"no server tag", good, map[string]*string{tagTrustDomain: s(testTD)}, true},
		{"nil server tag", good, map[string]*string{tagTrustDomain: s(testTD), tagServerID: nil}, true},
		{"empty server tag", good, map[string]*string{tagTrustDomain: s(testTD), tagServerID: s(" ")}, true},
		{"no uuid", "spire-key-not-a-uuid-at-all-xxxxxxxxxxxxxxxxxxxxx-x509-CA-A", map[string]*string{tagTrustDomain: s(testTD), tagServerID: s("x")}, true},
		{"short", "spire-key-x", map[string]*string{tagTrustDomain: s(testTD), tagServerID: s("x")}, true},
		{"key id tag mismatch", good, map[string]*string{tagTrustDomain: s(testTD), tagServerID: s("x"), tagKeyID: s("JWT_A")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problem := parseKey(tt.key, tt.tags, testTD)
			if (problem != "") != tt.wantProblem || (problem == "" && got.keyID != "") {
				t.Errorf("parseKey = %+v, %q; want problem %v and no key", got, problem, tt.wantProblem)
			}
		})
	}
}
