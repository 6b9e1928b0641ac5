package keyvault

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// maxPageSize is the service's page size limit (and default).
const maxPageSize = 25

type listResult struct {
	Value    []keyItem `json:"value"`
	NextLink *string   `json:"nextLink"`
}

// list serves ListKeys, ListKeyVersions and ListDeletedKeys, at most 25
// items a page (maxresults), with an absolute nextLink carrying an opaque
// $skiptoken. Keys are sorted by name, versions by version ID, as the
// service returns them. As on the service, the cursor of ListKeys and
// ListDeletedKeys walks over every name of the vault, live and deleted, and
// a page lists only those of its names that the listing shows: a page can
// hold fewer items than asked, or none, and still have a nextLink
// (Options.FullPages turns this off).
func (s *Server) list(c *call) (any, *apiError) {
	size := maxPageSize
	if m := c.query.Get("maxresults"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < 1 || n > maxPageSize {
			return nil, badParam("Invalid maxresults %q: it must be an integer from 1 to %d.", m, maxPageSize)
		}
		size = n
	}
	offset := 0
	if tok := c.query.Get("$skiptoken"); tok != "" {
		b, err := unb64(tok)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
		if err != nil || err2 != nil || n < 0 || !strings.HasPrefix(string(b), "o:") {
			return nil, badParam("Invalid $skiptoken.")
		}
		offset = n
	}

	// The cursor walks over entries: an entry without an item is a name
	// the page passes over without listing it.
	var entries []*keyItem
	c.v.mu.Lock()
	changed := c.v.purgeExpired(c.now)
	switch c.rt.op {
	case "ListKeys", "ListDeletedKeys":
		entries = c.v.nameEntries(c, c.rt.op == "ListDeletedKeys", !s.opts.FullPages)
	case "ListKeyVersions":
		if k := c.v.keys[lower(c.rt.name)]; k != nil {
			vers := make([]*keyVersion, 0, len(k.Versions))
			for _, kv := range k.Versions {
				vers = append(vers, kv)
			}
			slices.SortFunc(vers, func(a, b *keyVersion) int { return cmp.Compare(a.Version, b.Version) })
			for _, kv := range vers {
				it := c.v.item(c.base, k, kv, true)
				entries = append(entries, &it)
			}
		}
	}
	c.v.mu.Unlock()
	if changed {
		_ = s.persist()
	}

	res := listResult{Value: []keyItem{}}
	if offset < len(entries) {
		end := min(offset+size, len(entries))
		for _, it := range entries[offset:end] {
			if it != nil {
				res.Value = append(res.Value, *it)
			}
		}
		if end < len(entries) {
			q := url.Values{}
			q.Set("api-version", c.query.Get("api-version"))
			q.Set("$skiptoken", b64([]byte("o:"+strconv.Itoa(end))))
			if c.query.Get("maxresults") != "" {
				q.Set("maxresults", strconv.Itoa(size))
			}
			link := c.base + listPath(c.rt) + "?" + q.Encode()
			res.NextLink = &link
		}
	}
	return res, nil
}

func listPath(rt route) string {
	switch rt.op {
	case "ListDeletedKeys":
		return "/deletedkeys"
	case "ListKeyVersions":
		return "/keys/" + url.PathEscape(rt.name) + "/versions"
	}
	return "/keys"
}

func sortedKeys(m map[string]*keyObj) []*keyObj {
	out := make([]*keyObj, 0, len(m))
	for _, k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b *keyObj) int { return cmp.Compare(lower(a.Name), lower(b.Name)) })
	return out
}

// nameEntries returns the cursor's entries of ListKeys (deleted false) or
// ListDeletedKeys (deleted true), sorted by name: with walk, one per name of
// the vault, live or deleted, with an item only for the names the listing
// shows; without, only those. A key still being deleted is shown by
// neither listing. The caller holds v.mu.
func (v *vault) nameEntries(c *call, deleted, walk bool) []*keyItem {
	all := make(map[string]*keyObj, len(v.keys)+len(v.deleted))
	for n, k := range v.keys {
		all[n] = k
	}
	for n, k := range v.deleted {
		all[n] = k
	}
	var out []*keyItem
	for _, k := range sortedKeys(all) {
		_, isDeleted := v.deleted[lower(k.Name)]
		if isDeleted != deleted || k.beingDeleted(c.now) {
			if walk {
				out = append(out, nil)
			}
			continue
		}
		it := v.item(c.base, k, k.Versions[k.Latest], false)
		out = append(out, &it)
	}
	return out
}
