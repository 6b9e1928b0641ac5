package gcpkms

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// A CryptoKey's labels are the lease record of all its versions: Cloud KMS
// has no labels on versions, and a label update replaces the key's whole
// label map.
const (
	// labelLeasePrefix starts the label of one holder's serving leases:
	// spire-lease-<holder> = entries joined by entrySep, one per version
	// the holder holds, each "<version number>-<unix milliseconds>" with
	// pendingSuffix appended while the lease is pending (recorded by a
	// creation the engine has not committed yet). A process holds two
	// versions of a key during a rotation (the one it serves, committed,
	// and the one it creates, pending), so one entry per holder would let
	// either lease overwrite the other. A value of one entry is what
	// releases before several entries wrote. At most engine.MaxLeases
	// holders' labels are kept on a key, and at most maxHolderEntries
	// entries in each.
	labelLeasePrefix = "spire-lease-"
	// pendingSuffix ends a pending lease's entry.
	pendingSuffix = "-p"
	// entrySep separates the entries of a lease label.
	entrySep = "_"
	// maxHolderEntries is how many versions' leases one holder's label
	// keeps: the version it serves, the one it creates, and one more (the
	// previous one, or a creation never committed).
	maxHolderEntries = 3
	// msDigits is the length of a lease's time: Unix milliseconds have 13
	// digits from September 2001 until November 2286.
	msDigits = 13
	// entryOverhead is an entry's length beyond its version number, at
	// most: '-', the time and pendingSuffix.
	entryOverhead = 1 + msDigits + len(pendingSuffix)
	// fullVersionDigits is the longest version number with which
	// maxHolderEntries entries, all pending, always fit in one label value
	// (63 characters): (63-2)/3-16 = 4, versions 1 to 9999. From version
	// 10000 on, encodeEntries keeps fewer where they would not fit (two
	// always fit up to 15 digits, far beyond any key's versions); the
	// entry being written always fits, alone, since a version number and
	// a time have at most 19 digits each.
	fullVersionDigits = (maxLabelValLen-(maxHolderEntries-1)*len(entrySep))/maxHolderEntries - entryOverhead
	// labelRecent records, for the version created last, how many
	// generations of its key ID this server created in the hour up to it:
	// spire-recent = "<version number>-<count>". One label serves the whole
	// key: only the newest generation's count matters to the engine's
	// create-rate guard after a restart, and it is always the version the
	// label names when nobody created one since.
	labelRecent = "spire-recent"
)

// Compile-time checks of the limits above (a negative constant does not
// convert to uint): maxHolderEntries entries of versions up to
// fullVersionDigits digits fit, and so does one entry of the longest
// version number and time (19 digits each).
const (
	_ = uint(maxLabelValLen - maxHolderEntries*(fullVersionDigits+entryOverhead) - (maxHolderEntries-1)*len(entrySep))
	_ = uint(maxLabelValLen - (19 + 1 + 19 + len(pendingSuffix)))
)

// leaseEntry is one entry of a holder's lease label: its lease on one
// version.
type leaseEntry struct {
	num     uint64 // the version number
	renewed int64  // Unix milliseconds
	pending bool
}

// String returns the entry as a lease label writes it.
func (e leaseEntry) String() string {
	v := strconv.FormatUint(e.num, 10) + "-" + strconv.FormatInt(e.renewed, 10)
	if e.pending {
		v += pendingSuffix
	}
	return v
}

// parseEntry parses one entry of a lease label.
func parseEntry(s string) (leaseEntry, bool) {
	s, pending := strings.CutSuffix(s, pendingSuffix)
	num, ms, ok := strings.Cut(s, "-")
	if !ok {
		return leaseEntry{}, false
	}
	n, ok1 := parseDecimal(num)
	t, ok2 := parseDecimal(ms)
	if !ok1 || !ok2 {
		return leaseEntry{}, false
	}
	return leaseEntry{num: n, renewed: int64(t), pending: pending}, true
}

// parseEntries reads a lease label's value: its well-formed entries, in
// the order written. Malformed entries are skipped, and so is an entry for
// a version an earlier entry already names (the plugin never writes two):
// a lease only ever keeps a version, so losing one can at worst let a
// version be retired as it would have been without it.
func parseEntries(v string) []leaseEntry {
	var out []leaseEntry
	for _, s := range strings.Split(v, entrySep) {
		e, ok := parseEntry(s)
		if ok && !slices.ContainsFunc(out, func(o leaseEntry) bool { return o.num == e.num }) {
			out = append(out, e)
		}
	}
	return out
}

// encodeEntries returns the lease label value recording entries (distinct
// versions), lowest version first. Beyond maxHolderEntries entries, or
// beyond the label value's 63 characters, the entries of the lowest
// versions other than keep go first: a holder's newest versions are those
// it serves or creates, and a process whose lease was pushed out restores
// it at its lease check.
func encodeEntries(entries []leaseEntry, keep uint64) string {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b leaseEntry) int { return cmp.Compare(a.num, b.num) })
	for {
		parts := make([]string, len(entries))
		for i, e := range entries {
			parts[i] = e.String()
		}
		v := strings.Join(parts, entrySep)
		if len(entries) <= 1 || (len(entries) <= maxHolderEntries && len(v) <= maxLabelValLen) {
			return v
		}
		drop := 0
		if entries[0].num == keep {
			drop = 1
		}
		entries = slices.Delete(entries, drop, drop+1)
	}
}

// leasesOf reads the leases recorded on a CryptoKey, one per entry of each
// holder's label, sorted by holder and then by version number.
func leasesOf(keyName string, labels map[string]string) []engine.Lease {
	var out []engine.Lease
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		holder, ok := strings.CutPrefix(k, labelLeasePrefix)
		if !ok || holder == "" {
			continue
		}
		entries := parseEntries(labels[k])
		slices.SortFunc(entries, func(a, b leaseEntry) int { return cmp.Compare(a.num, b.num) })
		for _, e := range entries {
			out = append(out, engine.Lease{
				Holder:  holder,
				Ref:     versionName(keyName, e.num),
				Renewed: time.UnixMilli(e.renewed),
				Pending: e.pending,
			})
		}
	}
	return out
}

// parseDecimal parses a positive decimal number written with digits only
// (no sign, no leading zero), so that every label value has one reading
// and a version number maps to exactly one version name.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || s[0] == '0' || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 63)
	return n, err == nil
}

// versionName is the name of version number n of keyName.
func versionName(keyName string, n uint64) string {
	return keyName + "/cryptoKeyVersions/" + strconv.FormatUint(n, 10)
}

// versionNumber returns the number ending a version name ("" if none).
func versionNumber(version string) string {
	_, num, _ := strings.Cut(version, "/cryptoKeyVersions/")
	return num
}

// setLeases records in labels (a key's whole label set, changed in place)
// the leases on version that leases holds. Each holder named gets its
// entry for version written; holders not named lose theirs (a label left
// with no entry goes); every holder's entries for other versions are kept,
// within maxHolderEntries (see encodeEntries). Labels of holders without an
// entry for version are left as they are. Beyond engine.MaxLeases
// holders' labels (or beyond Cloud KMS's 64 labels, on a key labelled
// before key_labels was shortened) the labels of the holders that wrote
// least recently go: a key that cannot be kept alive is worse than a lease
// fewer.
func setLeases(labels map[string]string, keyName, version string, leases []engine.Lease) {
	num, ok := parseDecimal(versionNumber(version))
	if !ok {
		return
	}
	written := map[string]leaseEntry{}
	for _, l := range leases {
		if l.Ref == version && validHolder(l.Holder) && l.Renewed.UnixMilli() > 0 {
			written[l.Holder] = leaseEntry{num: num, renewed: l.Renewed.UnixMilli(), pending: l.Pending}
		}
	}
	newest := map[string]int64{} // holder: its latest entry's time
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		holder, ok := strings.CutPrefix(k, labelLeasePrefix)
		if !ok || holder == "" {
			continue
		}
		entries := parseEntries(labels[k])
		e, write := written[holder]
		delete(written, holder)
		kept := slices.DeleteFunc(slices.Clone(entries), func(o leaseEntry) bool { return o.num == num })
		switch {
		case write:
			kept = append(kept, e)
		case len(kept) == len(entries):
			// No entry for version: left as it is.
			noteNewest(newest, holder, entries)
			continue
		}
		if len(kept) == 0 {
			delete(labels, k)
			continue
		}
		labels[k] = encodeEntries(kept, num)
		noteNewest(newest, holder, parseEntries(labels[k]))
	}
	for holder, e := range written {
		labels[labelLeasePrefix+holder] = encodeEntries([]leaseEntry{e}, num)
		noteNewest(newest, holder, []leaseEntry{e})
	}

	holders := slices.Collect(maps.Keys(newest))
	slices.SortFunc(holders, func(a, b string) int {
		return cmp.Or(cmp.Compare(newest[a], newest[b]), strings.Compare(a, b))
	})
	for len(holders) > engine.MaxLeases || (len(labels) > maxLabels && len(holders) > 1) {
		delete(labels, labelLeasePrefix+holders[0])
		holders = holders[1:]
	}
}

// noteNewest records in newest the time of holder's latest entry, if it
// has any.
func noteNewest(newest map[string]int64, holder string, entries []leaseEntry) {
	for _, e := range entries {
		if t, ok := newest[holder]; !ok || e.renewed > t {
			newest[holder] = e.renewed
		}
	}
}

// validHolder reports whether a holder ID can end a label name.
func validHolder(h string) bool {
	return h != "" && len(labelLeasePrefix)+len(h) <= maxLabelKeyLen && allRunes(h, labelRune)
}

// setRecent records in labels the creation count of version, the version
// just created; a count of zero records none (an older version's record is
// dropped then, as it no longer describes the newest generation).
func setRecent(labels map[string]string, version string, count int) {
	if count <= 0 {
		delete(labels, labelRecent)
		return
	}
	labels[labelRecent] = versionNumber(version) + "-" + strconv.Itoa(count)
}

// recentOf returns the creation count recorded for version, or zero when
// the key records none for it (another version was created since, or the
// label is malformed).
func recentOf(labels map[string]string, version string) int {
	num, count, ok := strings.Cut(labels[labelRecent], "-")
	if !ok || num != versionNumber(version) {
		return 0
	}
	if _, ok := parseDecimal(num); !ok {
		return 0
	}
	n, ok := parseDecimal(count)
	if !ok || n > 1<<31-1 {
		return 0
	}
	return int(n)
}
