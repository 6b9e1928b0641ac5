package gcpkms

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/protobuf/proto"

	"github.com/kmskeeper/kmskeeper/config"
)

// TestServerIDRoundTrip checks that every server ID the configuration
// accepts comes back from the listing exactly as written: the CryptoKey IDs
// and labels ownKeyLabels writes, through the protobuf wire, read back by
// ListGenerations' parsing (the spire-server-id label, then spireKeyID). On
// Key Vault "srv-a " was accepted and then skipped by the listing (issue 15,
// defect 5); here each refused ID is one Cloud KMS would refuse as part of a
// CryptoKey ID or as a label value, so the rule is exactly what fits both.
func TestServerIDRoundTrip(t *testing.T) {
	keyIDs := []string{"x509-CA-A", "x509-CA-B", "JWT-Signer-A", "JWT-Signer-B", longestSPIREKeyID}
	// fits reports whether Cloud KMS takes id in every CryptoKey ID of
	// SPIRE's key IDs and as a label value.
	fits := func(id string) bool {
		for _, k := range keyIDs {
			if !cryptoKeyIDPattern.MatchString(cryptoKeyID(id, k)) {
				return false
			}
		}
		first, _ := utf8.DecodeRuneInString(id)
		return id != "" && utf8.RuneCountInString(id) <= maxLabelValLen && allRunes(id, labelRune) && first != utf8.RuneError
	}
	accepted := []string{
		"a", "0", "-", "_", "srv-a", "server_1", "a-b-c",
		"2b3c9a8e-1d4f-4e6a-9b7c-0d1e2f3a4b5c",
		strings.Repeat("z", maxServerIDLen()),
	}
	for _, id := range accepted {
		t.Run("accepted "+id, func(t *testing.T) {
			if err := checkServerID(id); err != nil {
				t.Fatalf("checkServerID: %v", err)
			}
			if !fits(id) {
				t.Fatalf("Cloud KMS would refuse %q in a CryptoKey ID or label", id)
			}
			b := &Backend{opts: Options{ServerID: id, Labels: map[string]string{"team": "sec"}}, tdLabel: trustDomainLabel(testTrustDomain)}
			for _, keyID := range keyIDs {
				sent := &kmspb.CryptoKey{Name: testRing + "/cryptoKeys/" + cryptoKeyID(id, keyID), Labels: b.ownKeyLabels(nil, "1700000000")}
				data, err := proto.Marshal(sent)
				if err != nil {
					t.Fatal(err)
				}
				listed := &kmspb.CryptoKey{}
				if err := proto.Unmarshal(data, listed); err != nil {
					t.Fatal(err)
				}
				serverID := listed.GetLabels()[labelServerID]
				gotKeyID, ok := spireKeyID(listed.GetName(), serverID)
				if serverID != id || !ok || gotKeyID != keyID {
					t.Errorf("listed %s as server %q, key ID %q (%v); want %q, %q", listed.GetName(), serverID, gotKeyID, ok, id, keyID)
				}
			}
		})
	}
	refused := []string{
		"srv-a ", " srv-a", "srv a", "srv-a\n", "srv\ta", "", "Srv-A", "srv.a", "srv/a", "é", "srv-ü",
		strings.Repeat("z", maxServerIDLen()+1),
	}
	for _, id := range refused {
		t.Run("refused "+id, func(t *testing.T) {
			err := checkServerID(id)
			if err == nil || !strings.Contains(err.Error(), "lowercase letters, digits, '-' and '_'") && !strings.Contains(err.Error(), "characters long") {
				t.Fatalf("checkServerID(%q) = %v, want a refusal saying what is allowed", id, err)
			}
			if fits(id) {
				t.Errorf("Cloud KMS would take %q; it is refused for nothing", id)
			}
			if id == "" {
				return // key_identifier_value = "" means unset
			}
			hcl := "key_ring = \"" + testRing + "\"\nendpoint = \"127.0.0.1:1\"\nkey_identifier_value = " + strconv.Quote(id) + "\n"
			_, err = config.Parse(hcl, testTrustDomain, []config.Kind{Kind()})
			if err == nil || !strings.Contains(err.Error(), "key_identifier_value") || !strings.Contains(err.Error(), "cannot be used with gcp_kms") {
				t.Errorf("Parse with key_identifier_value %q = %v", id, err)
			}
		})
	}
}
