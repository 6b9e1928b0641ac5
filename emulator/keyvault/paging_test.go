package keyvault

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

func TestPagingOver25Keys(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{DeletionDelay: instantDeletion})
	c := newClient(t, s, "")
	cx := ctx(t)
	const n = 30
	for i := range n {
		if _, err := c.CreateKey(cx, fmt.Sprintf("key-%02d", i), azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	for i := range 27 {
		if _, err := c.CreateKey(cx, "many", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatalf("version %d: %v", i, err)
		}
	}

	pages, names := 0, map[string]bool{}
	pager := c.NewListKeyPropertiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(cx)
		if err != nil {
			t.Fatalf("page: %v", err)
		}
		pages++
		if len(page.Value) > maxPageSize {
			t.Errorf("page of %d items", len(page.Value))
		}
		for _, it := range page.Value {
			if it.KID.Version() != "" {
				t.Errorf("list kid %s carries a version", *it.KID)
			}
			names[it.KID.Name()] = true
		}
	}
	if pages != 2 || len(names) != n+1 {
		t.Errorf("ListKeys: %d pages, %d keys; want 2, %d", pages, len(names), n+1)
	}

	versions := 0
	vp := c.NewListKeyPropertiesVersionsPager("many", nil)
	prev := ""
	for vp.More() {
		page, err := vp.NextPage(cx)
		if err != nil {
			t.Fatalf("versions page: %v", err)
		}
		for _, it := range page.Value {
			v := it.KID.Version()
			if v <= prev {
				t.Errorf("versions not sorted: %s after %s", v, prev)
			}
			prev = v
			versions++
		}
	}
	if versions != 27 {
		t.Errorf("%d versions, want 27", versions)
	}

	// maxresults and the absolute nextLink, on the wire.
	tok, err := s.IssueToken(s.ClientID(), ResourceVault, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	get := func(u string) (int, listResult) {
		req, _ := http.NewRequestWithContext(cx, http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var lr listResult
		_ = json.Unmarshal(b, &lr)
		return resp.StatusCode, lr
	}
	code, lr := get(s.URL() + "keys?api-version=7.4&maxresults=10")
	if code != 200 || len(lr.Value) != 10 || lr.NextLink == nil {
		t.Fatalf("maxresults=10: %d, %d items, next %v", code, len(lr.Value), lr.NextLink)
	}
	next, err := url.Parse(*lr.NextLink)
	if err != nil || !next.IsAbs() || next.Query().Get("maxresults") != "10" || next.Query().Get("api-version") != "7.4" {
		t.Errorf("nextLink %q", *lr.NextLink)
	}
	seen := 10
	for lr.NextLink != nil {
		_, lr = get(*lr.NextLink)
		seen += len(lr.Value)
	}
	if seen != n+1 {
		t.Errorf("followed nextLinks to %d keys, want %d", seen, n+1)
	}
	if code, _ := get(s.URL() + "keys?api-version=7.4&maxresults=26"); code != http.StatusBadRequest {
		t.Errorf("maxresults=26 -> %d, want 400", code)
	}
	if code, _ := get(s.URL() + "keys?api-version=2016-10-01"); code != http.StatusBadRequest {
		t.Errorf("old api-version -> %d, want 400", code)
	}

	// Deleted keys page the same way.
	for i := range n {
		if _, err := c.DeleteKey(cx, fmt.Sprintf("key-%02d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	deleted := 0
	dp := c.NewListDeletedKeyPropertiesPager(nil)
	for dp.More() {
		page, err := dp.NextPage(cx)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Value {
			if it.RecoveryID == nil || !strings.HasSuffix(*it.RecoveryID, "/deletedkeys/"+it.KID.Name()) || it.DeletedDate == nil || it.ScheduledPurgeDate == nil {
				t.Errorf("deleted item %+v", it)
			}
			deleted++
		}
	}
	if deleted != n {
		t.Errorf("%d deleted keys listed, want %d", deleted, n)
	}
}

// TestPagesWalkOverDeletedNames checks the service's paging: the cursor
// walks over soft-deleted names too, so a page can be empty ("value": [])
// and still carry a nextLink, which the SDK's pager follows; FullPages
// gives the emulator's former full pages.
func TestPagesWalkOverDeletedNames(t *testing.T) {
	t.Parallel()
	for _, full := range []bool{false, true} {
		s := startServer(t, Options{DeletionDelay: instantDeletion, FullPages: full})
		c := newClient(t, s, "")
		cx := ctx(t)
		// 26 deleted names sort before the 3 live ones.
		for i := range 26 {
			name := fmt.Sprintf("a-gone-%02d", i)
			if _, err := c.CreateKey(cx, name, azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := c.DeleteKey(cx, name, nil); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range []string{"z-live-1", "z-live-2", "z-live-3"} {
			if _, err := c.CreateKey(cx, name, azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
				t.Fatal(err)
			}
		}
		var sizes []int
		listed := 0
		for p := c.NewListKeyPropertiesPager(nil); p.More(); {
			page, err := p.NextPage(cx)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(page.Value))
			listed += len(page.Value)
		}
		want := []int{0, 3}
		if full {
			want = []int{3}
		}
		if listed != 3 || !slices.Equal(sizes, want) {
			t.Errorf("FullPages=%v: pages of %v keys, want %v", full, sizes, want)
		}
		deleted := 0
		for p := c.NewListDeletedKeyPropertiesPager(nil); p.More(); {
			page, err := p.NextPage(cx)
			if err != nil {
				t.Fatal(err)
			}
			deleted += len(page.Value)
		}
		if deleted != 26 {
			t.Errorf("FullPages=%v: %d deleted keys listed, want 26", full, deleted)
		}
	}
}
