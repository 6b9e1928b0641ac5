package azurekv

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// tagLeases holds the serving leases of a key object (one generation):
// "<holder>:<unix milliseconds>" pairs separated by ';'. At most
// keymanager.MaxLeases fit well within Key Vault's 256-character tag values.
const tagLeases = "spire-leases"

// encodeLeases writes the leases on ref as a tagLeases value, oldest first.
func encodeLeases(leases []keymanager.Lease, ref string) string {
	var mine []keymanager.Lease
	for _, l := range leases {
		if strings.EqualFold(l.Ref, ref) && validHolder(l.Holder) {
			mine = append(mine, l)
		}
	}
	slices.SortFunc(mine, func(a, b keymanager.Lease) int { return a.Renewed.Compare(b.Renewed) })
	if len(mine) > keymanager.MaxLeases {
		mine = mine[len(mine)-keymanager.MaxLeases:]
	}
	parts := make([]string, len(mine))
	for i, l := range mine {
		parts[i] = l.Holder + ":" + strconv.FormatInt(l.Renewed.UnixMilli(), 10)
	}
	return strings.Join(parts, ";")
}

// decodeLeases reads a tagLeases value of key ref. Malformed entries (a tag
// edited by hand) are skipped: a lease only ever keeps a key, so losing one
// can at worst let a key be retired as it would have been without leases.
func decodeLeases(tags map[string]*string, ref string) []keymanager.Lease {
	v := tagValue(tags, tagLeases)
	if v == "" {
		return nil
	}
	var out []keymanager.Lease
	for part := range strings.SplitSeq(v, ";") {
		holder, ms, ok := strings.Cut(part, ":")
		n, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil || n <= 0 || !validHolder(holder) {
			continue
		}
		out = append(out, keymanager.Lease{Holder: holder, Ref: ref, Renewed: time.UnixMilli(n)})
	}
	return out
}

// validHolder reports whether a holder ID can be written in tagLeases.
func validHolder(h string) bool {
	return h != "" && len(h) <= 32 && !strings.ContainsAny(h, ":; ")
}

// leaseTags returns the tags to write on a key: the plugin's own, the
// configured key_tags, the leases on it, and the other tags it carries (as
// last read) as far as Key Vault's 15 fit: a key tagged before key_tags was
// shortened must still be kept alive.
func (b *Backend) leaseTags(g keymanager.Generation) map[string]*string {
	tags := keyTags(b.tags, b.trustDomain, b.serverID, g.KeyID)
	if v := encodeLeases(g.Leases, g.Ref); v != "" {
		tags[tagLeases] = ptr(v)
	}
	for _, k := range slices.Sorted(maps.Keys(g.Labels)) {
		if _, own := tags[k]; !own && k != tagLeases && len(tags) < maxTags {
			tags[k] = ptr(g.Labels[k])
		}
	}
	return tags
}

// labelsOf copies a key's tags into a Generation's Labels.
func labelsOf(tags map[string]*string) map[string]string {
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}
