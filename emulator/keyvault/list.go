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
// service returns them.
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

	var items []keyItem
	c.v.mu.Lock()
	changed := c.v.purgeExpired(c.now)
	switch c.rt.op {
	case "ListKeys":
		for _, k := range sortedKeys(c.v.keys) {
			items = append(items, c.v.item(c.base, k, k.Versions[k.Latest], false))
		}
	case "ListDeletedKeys":
		for _, k := range sortedKeys(c.v.deleted) {
			if !k.beingDeleted(c.now) {
				items = append(items, c.v.item(c.base, k, k.Versions[k.Latest], false))
			}
		}
	case "ListKeyVersions":
		if k := c.v.keys[lower(c.rt.name)]; k != nil {
			vers := make([]*keyVersion, 0, len(k.Versions))
			for _, kv := range k.Versions {
				vers = append(vers, kv)
			}
			slices.SortFunc(vers, func(a, b *keyVersion) int { return cmp.Compare(a.Version, b.Version) })
			for _, kv := range vers {
				items = append(items, c.v.item(c.base, k, kv, true))
			}
		}
	}
	c.v.mu.Unlock()
	if changed {
		_ = s.persist()
	}

	res := listResult{Value: []keyItem{}}
	if offset < len(items) {
		end := min(offset+size, len(items))
		res.Value = items[offset:end]
		if end < len(items) {
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
