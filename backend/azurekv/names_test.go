package azurekv

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/kmskeeper/kmskeeper/config"
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

// TestServerIDRoundTrip checks that every server ID the configuration
// accepts comes back from the listing exactly as written: through keyTags,
// the tags' JSON as the SDK sends and reads it, and parseKey. "srv-a " was
// accepted and its keys were then skipped by the listing, so a restarted
// server found none of them (issue 15, defect 5). Each refused ID is refused
// by config.Parse, naming key_identifier_value and what is allowed, and for
// each the test shows why: the listing skips it, the wire alters it, it is
// longer than a tag holds, or it holds a control character.
func TestServerIDRoundTrip(t *testing.T) {
	const name = "spire-key-1b4e28ba-2fa1-41d2-883f-0016d3cca427-x509-CA-A"
	// roundTrip returns the server ID the listing reads from a key tagged
	// with id, and the listing's reason to skip the key.
	roundTrip := func(t *testing.T, id string) (string, nameProblem) {
		t.Helper()
		data, err := json.Marshal(azkeys.CreateKeyParameters{Tags: keyTags(map[string]string{"team": "sec"}, testTD, id, "x509-CA-A")})
		if err != nil {
			t.Fatal(err)
		}
		var listed azkeys.KeyProperties
		if err := json.Unmarshal(data, &listed); err != nil {
			t.Fatal(err)
		}
		got, problem := parseKey(name, listed.Tags, testTD)
		return got.serverID, problem
	}
	accepted := []string{
		"srv-a",
		"2b3c9a8e-1d4f-4e6a-9b7c-0d1e2f3a4b5c",
		"server 1 (eu-west)",
		"team/srv:a@eu;x=y",
		"Ünïcødé-サーバー-сервер",
		"emoji-🔑",
		"zero\u200bwidth",
		`quote"and\backslash`,
		strings.Repeat("k", maxTagLen),
		strings.Repeat("é", maxTagLen/2),
	}
	for _, id := range accepted {
		t.Run("accepted "+id, func(t *testing.T) {
			if err := checkServerID(id); err != nil {
				t.Fatalf("checkServerID: %v", err)
			}
			if got, problem := roundTrip(t, id); problem != "" || got != id {
				t.Errorf("listed server ID = %q (problem %q), want %q", got, problem, id)
			}
		})
	}
	tests := []struct {
		id, why string // why: skipped, altered, long or control
	}{
		{"srv-a ", "skipped"},
		{" srv-a", "skipped"},
		{"srv-a\u00a0", "skipped"},
		{"\u3000srv-a", "skipped"},
		{"srv-a\n", "skipped"},
		{"", "skipped"},
		{"srv\xffa", "altered"},
		{strings.Repeat("k", maxTagLen+1), "long"},
		{strings.Repeat("🔑", maxTagLen/2+1), "long"},
		{"srv\ta", "control"},
		{"srv\x00a", "control"},
		{"srv\u0085a", "control"},
	}
	for _, tt := range tests {
		t.Run("refused "+tt.id, func(t *testing.T) {
			err := checkServerID(tt.id)
			if err == nil || !strings.Contains(err.Error(), "any printable characters") {
				t.Fatalf("checkServerID(%q) = %v, want a refusal saying what is allowed", tt.id, err)
			}
			got, problem := roundTrip(t, tt.id)
			switch tt.why {
			case "skipped":
				if problem == "" {
					t.Errorf("the listing reads %q back; the ID is refused for nothing", got)
				}
			case "altered":
				if problem == "" && got == tt.id {
					t.Errorf("the listing reads %q back unchanged; the ID is refused for nothing", got)
				}
			case "long":
				if tagLen(tt.id) <= maxTagLen {
					t.Errorf("the ID fits a tag (%d characters)", tagLen(tt.id))
				}
			case "control":
				if !strings.ContainsFunc(tt.id, unicode.IsControl) {
					t.Errorf("the ID holds no control character")
				}
			}
			if tt.id == "" || !utf8.ValidString(tt.id) || len(tt.id) > 256 {
				return // not expressible as key_identifier_value, or refused for its length first
			}
			hcl := "key_vault_uri = \"https://v.vault.azure.net/\"\nkey_identifier_value = " + strconv.Quote(tt.id) + "\n"
			_, err = config.Parse(hcl, testTD, []config.Kind{Kind()})
			if err == nil || !strings.Contains(err.Error(), "key_identifier_value") || !strings.Contains(err.Error(), "cannot be used with azure_key_vault") || !strings.Contains(err.Error(), "any printable characters") {
				t.Errorf("Parse with key_identifier_value %q = %v", tt.id, err)
			}
		})
	}
}
