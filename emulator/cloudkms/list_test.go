package cloudkms

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
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

// TestListCryptoKeyVersionsPaging drives ListCryptoKeyVersions page by page
// through the generated gRPC stub (to see every response field) and through
// the client's iterator, against the paging rules README.md documents:
// default and maximum page size 1000, creation (version number) order by
// default, opaque cursors bound to the query, total_size only without a
// filter.
func TestListCryptoKeyVersionsPaging(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	conn, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stub := kmspb.NewKeyManagementServiceClient(conn)

	const p256 = kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256
	paged := testRing + "/cryptoKeys/paged"
	if _, err := s.SeedCryptoKey(SeedKey{Name: paged, Algorithm: p256, Versions: []SeedVersion{
		{State: kmspb.CryptoKeyVersion_ENABLED},
		{State: kmspb.CryptoKeyVersion_DISABLED},
		{State: kmspb.CryptoKeyVersion_DESTROYED},
		{State: kmspb.CryptoKeyVersion_ENABLED},
		{State: kmspb.CryptoKeyVersion_DESTROY_SCHEDULED},
	}}); err != nil {
		t.Fatal(err)
	}
	// More versions than the largest page (destroyed ones have no key
	// material, so they cost nothing to seed).
	big := testRing + "/cryptoKeys/big"
	many := make([]SeedVersion, maxPageSize+1)
	for i := range many {
		many[i].State = kmspb.CryptoKeyVersion_DESTROYED
	}
	if _, err := s.SeedCryptoKey(SeedKey{Name: big, Algorithm: p256, Versions: many}); err != nil {
		t.Fatal(err)
	}

	// pages lists every page of req and returns the version numbers per page
	// and the total_size of each page.
	pages := func(t *testing.T, req *kmspb.ListCryptoKeyVersionsRequest) (got [][]int, totals []int32) {
		t.Helper()
		for n := 0; ; n++ {
			if n > 10 {
				t.Fatalf("more than 10 pages; page sizes %v, last page starts at %v", pageSizes(got), got[len(got)-1][:1])
			}
			resp, err := stub.ListCryptoKeyVersions(ctx, req)
			if err != nil {
				t.Fatalf("page %d: %v", n+1, err)
			}
			var nums []int
			for _, v := range resp.GetCryptoKeyVersions() {
				_, num, err := parseVersionName(v.GetName())
				if err != nil || !strings.HasPrefix(v.GetName(), req.GetParent()+"/") {
					t.Fatalf("version name %q", v.GetName())
				}
				nums = append(nums, num)
			}
			got, totals = append(got, nums), append(totals, resp.GetTotalSize())
			if resp.GetNextPageToken() == "" {
				return got, totals
			}
			if len(nums) == 0 {
				t.Fatal("empty page with a next_page_token")
			}
			req = proto.Clone(req).(*kmspb.ListCryptoKeyVersionsRequest)
			req.PageToken = resp.GetNextPageToken()
		}
	}
	seq := func(from, to int) []int {
		var out []int
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
		return out
	}
	for _, tc := range []struct {
		desc  string
		req   *kmspb.ListCryptoKeyVersionsRequest
		want  [][]int
		total int32 // on every page; 0 = not populated
	}{
		{"pages of two", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 2}, [][]int{{1, 2}, {3, 4}, {5}}, 5},
		{"default page size", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged}, [][]int{{1, 2, 3, 4, 5}}, 5},
		{"page size equal to the count", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 5}, [][]int{{1, 2, 3, 4, 5}}, 5},
		{"page size above the count", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 7}, [][]int{{1, 2, 3, 4, 5}}, 5},
		{"name desc", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 2, OrderBy: "name desc"}, [][]int{{5, 4}, {3, 2}, {1}}, 5},
		{"filter: no total_size", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 1, Filter: "state = ENABLED"}, [][]int{{1}, {4}}, 0},
		{"negated filter", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 2, Filter: "NOT state = ENABLED"}, [][]int{{2, 3}, {5}}, 0},
		{"filter matching nothing", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, Filter: "state = PENDING_GENERATION"}, [][]int{nil}, 0},
		{"default page size is 1000", &kmspb.ListCryptoKeyVersionsRequest{Parent: big}, [][]int{seq(1, 1000), {1001}}, 1001},
		{"page size capped at 1000", &kmspb.ListCryptoKeyVersionsRequest{Parent: big, PageSize: 5000}, [][]int{seq(1, 1000), {1001}}, 1001},
		{"blank order_by is the default order", &kmspb.ListCryptoKeyVersionsRequest{Parent: big, PageSize: 600, OrderBy: " "}, [][]int{seq(1, 600), seq(601, 1001)}, 1001},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, totals := pages(t, tc.req)
			if len(got) != len(tc.want) {
				t.Fatalf("%d pages, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !slices.Equal(got[i], tc.want[i]) {
					t.Fatalf("page %d = %v, want %v", i+1, got[i], tc.want[i])
				}
				if totals[i] != tc.total {
					t.Errorf("page %d total_size = %d, want %d", i+1, totals[i], tc.total)
				}
			}
		})
	}

	first, err := stub.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 2})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v", err)
	}
	token := first.GetNextPageToken()
	for _, tc := range []struct {
		desc string
		req  *kmspb.ListCryptoKeyVersionsRequest
		code codes.Code
		msg  string
	}{
		{"negative page size", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: -1}, codes.InvalidArgument, "page_size"},
		{"garbage token", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageToken: "garbage"}, codes.InvalidArgument, "page_token"},
		{"token of another key", &kmspb.ListCryptoKeyVersionsRequest{Parent: big, PageToken: token}, codes.InvalidArgument, "page_token"},
		{"token with another filter", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageToken: token, Filter: "state = ENABLED"}, codes.InvalidArgument, "page_token"},
		{"token with another order", &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageToken: token, OrderBy: "name desc"}, codes.InvalidArgument, "page_token"},
		{"missing key", &kmspb.ListCryptoKeyVersionsRequest{Parent: testRing + "/cryptoKeys/absent"}, codes.NotFound, "CryptoKey " + testRing + "/cryptoKeys/absent not found."},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := stub.ListCryptoKeyVersions(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	// The same token with a different page size is the same query.
	next, err := stub.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 10, PageToken: token})
	if err != nil || len(next.GetCryptoKeyVersions()) != 3 || next.GetNextPageToken() != "" {
		t.Fatalf("rest after a token, page size 10: %v, %v", next, err)
	}

	// A token is a cursor, not an offset: a version created between pages
	// shows up at the end, none is repeated or skipped.
	if _, err := c.CreateCryptoKeyVersion(ctx, &kmspb.CreateCryptoKeyVersionRequest{Parent: paged, CryptoKeyVersion: &kmspb.CryptoKeyVersion{}}); err != nil {
		t.Fatal(err)
	}
	got, totals := pages(t, &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 2, PageToken: token})
	if want := [][]int{{3, 4}, {5, 6}}; len(got) != 2 || !slices.Equal(got[0], want[0]) || !slices.Equal(got[1], want[1]) || totals[0] != 6 {
		t.Fatalf("pages after a new version: %v (total %v), want %v", got, totals, want)
	}

	// The client's iterator pages transparently with a small page size.
	it := c.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: paged, PageSize: 2})
	var nums []int
	for {
		v, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_, n, _ := parseVersionName(v.GetName())
		nums = append(nums, n)
	}
	if !slices.Equal(nums, seq(1, 6)) {
		t.Fatalf("iterator = %v", nums)
	}
}

func pageSizes(pages [][]int) []int {
	out := make([]int, len(pages))
	for i, p := range pages {
		out[i] = len(p)
	}
	return out
}
