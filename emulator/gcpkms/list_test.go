package gcpkms

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
)

func listKeyIDs(t *testing.T, s *Server, filter string) ([]string, error) {
	t.Helper()
	_, c := clientFor(t, s)
	var out []string
	it := c.ListCryptoKeys(context.Background(), &kmspb.ListCryptoKeysRequest{Parent: testRing, Filter: filter})
	for {
		k, err := it.Next()
		if err == iterator.Done {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k.GetName()[len(testRing+"/cryptoKeys/"):])
	}
}

// TestSPIREFilters lays keys out as SPIRE's built-in gcp_kms writes them and
// runs the filters its fetcher and stale-key collector send.
func TestSPIREFilters(t *testing.T) {
	s, _ := startTest(t, Options{})
	now := s.Clock().Now()
	stale := fmt.Sprint(now.Add(-15 * 24 * time.Hour).Unix())
	fresh := fmt.Sprint(now.Add(-time.Hour).Unix())
	td := "0a7d2e6f3c1b9a8d7e6f5a4b3c2d1e0f9a8b7c6d"
	for _, k := range []struct {
		id     string
		labels map[string]string
	}{
		{"spire-key-mine-x509-CA-A", map[string]string{"spire-server-td": td, "spire-server-id": "mine", "spire-active": "true", "spire-last-update": fresh}},
		{"spire-key-mine-JWT-Signer-A", map[string]string{"spire-server-td": td, "spire-server-id": "mine", "spire-active": "true"}},
		{"spire-key-other-x509-CA-A", map[string]string{"spire-server-td": td, "spire-server-id": "other", "spire-active": "true", "spire-last-update": stale}},
		{"spire-key-other-x509-CA-B", map[string]string{"spire-server-td": td, "spire-server-id": "other", "spire-active": "true"}},
		{"spire-key-gone-x509-CA-A", map[string]string{"spire-server-td": td, "spire-server-id": "gone", "spire-active": "false", "spire-last-update": stale}},
		{"spire-key-else-x509-CA-A", map[string]string{"spire-server-td": "ffff", "spire-server-id": "else", "spire-active": "true", "spire-last-update": stale}},
		{"unrelated", map[string]string{"team": "alpha-team"}},
	} {
		if _, err := s.SeedCryptoKey(SeedKey{Name: testRing + "/cryptoKeys/" + k.id, Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256,
			Labels: k.labels, Versions: []SeedVersion{{}}}); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := fmt.Sprint(now.Add(-14 * 24 * time.Hour).Unix())
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		// fetcher.go
		{"labels.spire-server-td = " + td + " AND labels.spire-server-id = mine AND labels.spire-active = true",
			[]string{"spire-key-mine-x509-CA-A", "spire-key-mine-JWT-Signer-A"}},
		// the stale-key collector: keys without spire-last-update never match "<"
		{"labels.spire-server-td = " + td + " AND labels.spire-server-id != mine AND labels.spire-active = true AND labels.spire-last-update < " + cutoff,
			[]string{"spire-key-other-x509-CA-A"}},
		{`labels.spire-last-update > "` + cutoff + `"`, []string{"spire-key-mine-x509-CA-A"}},
		{"labels.spire-last-update:*", []string{"spire-key-mine-x509-CA-A", "spire-key-other-x509-CA-A", "spire-key-gone-x509-CA-A", "spire-key-else-x509-CA-A"}},
		{"NOT labels.spire-server-td:*", []string{"unrelated"}},
		{"labels.team = alpha", nil},
		{"labels.team : ALPHA", []string{"unrelated"}},
		{"labels.spire-server-id = other OR labels.spire-server-id = gone labels.spire-active = false", []string{"spire-key-gone-x509-CA-A"}},
		{"(labels.spire-server-id = other AND labels.spire-last-update:*) OR -labels:spire-server-id", []string{"spire-key-other-x509-CA-A", "unrelated"}},
		{"name:JWT", []string{"spire-key-mine-JWT-Signer-A"}},
		{"purpose = ASYMMETRIC_SIGN AND version_template.algorithm = EC_SIGN_P256_SHA256 AND labels:team", []string{"unrelated"}},
		{"create_time <= " + now.Format(time.RFC3339), []string{"spire-key-mine-x509-CA-A", "spire-key-mine-JWT-Signer-A", "spire-key-other-x509-CA-A", "spire-key-other-x509-CA-B", "spire-key-gone-x509-CA-A", "spire-key-else-x509-CA-A", "unrelated"}},
	} {
		t.Run(tc.filter, func(t *testing.T) {
			got, err := listKeyIDs(t, s, tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"labels.a =", "state = ENABLED", "purpose = NOPE", "(labels.a = b", "labels.a = b)", "create_time > yesterday", "= x", "labels.a ~ b"} {
		t.Run("invalid "+bad, func(t *testing.T) {
			_, err := listKeyIDs(t, s, bad)
			wantCode(t, err, codes.InvalidArgument, "Invalid filter")
		})
	}
}

func TestPaging(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		id := fmt.Sprintf("k%d", 4-i) // created in reverse name order
		ids = append(ids, id)
		if _, err := s.SeedCryptoKey(SeedKey{Name: testRing + "/cryptoKeys/" + id, Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256}); err != nil {
			t.Fatal(err)
		}
	}
	// Raw pages of two: 2 + 2 + 1, creation order, total_size without filter.
	var got []string
	token := ""
	for pages := 1; ; pages++ {
		it := c.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: testRing, PageSize: 2, PageToken: token})
		it.PageInfo().MaxSize = 2
		if _, err := it.Next(); err != nil {
			t.Fatal(err)
		}
		page, ok := it.Response.(*kmspb.ListCryptoKeysResponse)
		if !ok || len(page.GetCryptoKeys()) > 2 || page.GetTotalSize() != 5 {
			t.Fatalf("page %d: %v", pages, it.Response)
		}
		for _, k := range page.GetCryptoKeys() {
			got = append(got, k.GetName()[len(testRing+"/cryptoKeys/"):])
		}
		token = page.GetNextPageToken()
		if token == "" {
			if pages != 3 {
				t.Fatalf("%d pages, want 3", pages)
			}
			break
		}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("paged keys %q, want %q", got, ids)
	}
	// order_by name desc through the iterator with a small page size.
	it := c.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: testRing, PageSize: 2, OrderBy: "name desc"})
	got = nil
	for {
		k, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, k.GetName()[len(testRing+"/cryptoKeys/"):])
	}
	if !slices.Equal(got, []string{"k4", "k3", "k2", "k1", "k0"}) {
		t.Fatalf("name desc: %q", got)
	}
	_, err := c.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: testRing, PageToken: "garbage"}).Next()
	wantCode(t, err, codes.InvalidArgument, "page_token")
	_, err = c.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: testRing, OrderBy: "create_time"}).Next()
	wantCode(t, err, codes.InvalidArgument, "order_by")
	_, err = c.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: testRing + "x"}).Next()
	wantCode(t, err, codes.NotFound, "KeyRing "+testRing+"x not found.")
}
