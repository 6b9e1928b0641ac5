package azurekv

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// tagLeases holds a key object's lease record (one generation): entries
// separated by ';', in this order:
//
//	recent=<n>          the creation count (CreateRequest.RecentCreations),
//	                    omitted when 0
//	<holder>:<ms>       a committed lease, renewed at <ms> Unix milliseconds
//	<holder>:<ms>:p     a pending lease (written by a creation, not yet
//	                    committed)
//
// The count shares the lease tag rather than taking one of its own: Key
// Vault allows 15 tags on a key, and another tag of the plugin's would have
// cost key_tags one. Releases before pending leases and the count wrote and
// read only "<holder>:<ms>" and skip any other entry as malformed, so they
// still read the committed leases of a record written now, and a record they
// wrote reads here as it always did.
//
// With engine.MaxLeases leases of the engine's 8-character holders a
// value is about 160 characters; encodeRecord drops the oldest leases should
// longer holders ever push it past Key Vault's 256.
const tagLeases = "spire-leases"

// recentEntry starts the creation-count entry of tagLeases.
const recentEntry = "recent="

// pendingFlag ends the entry of a pending lease in tagLeases.
const pendingFlag = "p"

// encodeRecord writes the tagLeases value of key ref: the creation count
// recent, then the leases on ref, oldest first. Leases on other keys, and
// leases that cannot be written (a holder with a separator in it, a renewal
// time before 1970), are left out; so are the oldest leases that would not
// fit in one tag value. It returns "" when there is nothing to record.
func encodeRecord(leases []engine.Lease, ref string, recent int) string {
	var mine []engine.Lease
	for _, l := range leases {
		if strings.EqualFold(l.Ref, ref) && validHolder(l.Holder) && l.Renewed.UnixMilli() > 0 {
			mine = append(mine, l)
		}
	}
	slices.SortStableFunc(mine, func(a, b engine.Lease) int { return a.Renewed.Compare(b.Renewed) })
	if len(mine) > engine.MaxLeases {
		mine = mine[len(mine)-engine.MaxLeases:]
	}
	var parts []string
	if recent > 0 {
		parts = append(parts, recentEntry+strconv.Itoa(recent))
	}
	for _, l := range mine {
		e := l.Holder + ":" + strconv.FormatInt(l.Renewed.UnixMilli(), 10)
		if l.Pending {
			e += ":" + pendingFlag
		}
		parts = append(parts, e)
	}
	// Drop the oldest leases (just after the count) until the value fits:
	// a process whose lease is pushed out restores it at its lease check.
	first := 0
	if recent > 0 {
		first = 1
	}
	for len(parts) > first && len(strings.Join(parts, ";")) > maxTagLen {
		parts = slices.Delete(parts, first, first+1)
	}
	return strings.Join(parts, ";")
}

// decodeRecord reads a tagLeases value of key ref: the leases it records
// and the creation count (0 when it records none). Malformed entries (a tag
// edited by hand, an entry of a later release) are skipped: a lease only
// ever keeps a key, so losing one can at worst let a key be retired as it
// would have been without it, and a lost count only lets the create-rate
// guard start lower after a restart, as it did before counts were recorded.
func decodeRecord(v, ref string) (leases []engine.Lease, recent int) {
	if v == "" {
		return nil, 0
	}
	for part := range strings.SplitSeq(v, ";") {
		if n, ok := strings.CutPrefix(part, recentEntry); ok {
			if c, err := strconv.Atoi(n); err == nil && c > 0 && recent == 0 {
				recent = c
			}
			continue
		}
		if l, ok := decodeLease(part, ref); ok {
			leases = append(leases, l)
		}
	}
	return leases, recent
}

// decodeLease reads one lease entry of a tagLeases value.
func decodeLease(e, ref string) (engine.Lease, bool) {
	holder, rest, ok := strings.Cut(e, ":")
	if !ok || !validHolder(holder) {
		return engine.Lease{}, false
	}
	ms, flag, flagged := strings.Cut(rest, ":")
	if flagged && flag != pendingFlag {
		return engine.Lease{}, false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return engine.Lease{}, false
	}
	return engine.Lease{Holder: holder, Ref: ref, Renewed: time.UnixMilli(n), Pending: flagged}, true
}

// validHolder reports whether a holder ID can be written in tagLeases.
func validHolder(h string) bool {
	return h != "" && len(h) <= 32 && !strings.ContainsAny(h, ":; =")
}

// recordedCount is the creation count to write back on g: g's own or, if g
// has none, the one in its record as last read (g.Labels). A count never
// changes after the creation, so a keep-alive of a generation the engine
// built without one must not erase it.
func recordedCount(g engine.Generation) int {
	if g.RecentCreations > 0 {
		return g.RecentCreations
	}
	_, n := decodeRecord(g.Labels[tagLeases], g.Ref)
	return n
}

// leaseTags returns the tags to write on a key: the plugin's own, the
// configured key_tags, the lease record (g's leases and creation count),
// and the other tags it carries (as last read) as far as Key Vault's 15
// fit: a key tagged before key_tags was shortened must still be kept alive.
func (b *Backend) leaseTags(g engine.Generation) map[string]*string {
	tags := keyTags(b.tags, b.trustDomain, b.serverID, g.KeyID)
	if v := encodeRecord(g.Leases, g.Ref, recordedCount(g)); v != "" {
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
