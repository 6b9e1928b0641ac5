package gcpkms

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// A CryptoKey's labels are the lease record of all its versions: Cloud KMS
// has no labels on versions, and a label update replaces the key's whole
// label map.
const (
	// labelLeasePrefix starts the label of one serving lease:
	// spire-lease-<holder> = "<version number>-<unix milliseconds>", with
	// "-p" appended while the lease is pending (recorded by a creation the
	// engine has not committed yet). A process serves one version of a key
	// at a time, so one label per holder is enough; at most
	// keymanager.MaxLeases are kept on a key.
	labelLeasePrefix = "spire-lease-"
	// pendingSuffix ends the value of a pending lease.
	pendingSuffix = "-p"
	// labelRecent records, for the version created last, how many
	// generations of its key ID this server created in the hour up to it:
	// spire-recent = "<version number>-<count>". One label serves the whole
	// key: only the newest generation's count matters to the engine's
	// create-rate guard after a restart, and it is always the version the
	// label names when nobody created one since.
	labelRecent = "spire-recent"
)

// leasesOf reads the leases recorded on a CryptoKey, sorted by holder.
// Malformed labels are skipped: a lease only ever keeps a version, so losing
// one can at worst let a version be retired as it would have been without
// leases.
func leasesOf(keyName string, labels map[string]string) []keymanager.Lease {
	var out []keymanager.Lease
	for k, v := range labels {
		holder, ok := strings.CutPrefix(k, labelLeasePrefix)
		if !ok || holder == "" {
			continue
		}
		if l, ok := parseLease(keyName, holder, v); ok {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b keymanager.Lease) int { return strings.Compare(a.Holder, b.Holder) })
	return out
}

// parseLease parses the value of holder's lease label on keyName.
func parseLease(keyName, holder, v string) (keymanager.Lease, bool) {
	v, pending := strings.CutSuffix(v, pendingSuffix)
	num, ms, ok := strings.Cut(v, "-")
	if !ok {
		return keymanager.Lease{}, false
	}
	n, ok1 := parseDecimal(num)
	t, ok2 := parseDecimal(ms)
	if !ok1 || !ok2 {
		return keymanager.Lease{}, false
	}
	return keymanager.Lease{
		Holder:  holder,
		Ref:     versionName(keyName, n),
		Renewed: time.UnixMilli(int64(t)),
		Pending: pending,
	}, true
}

// formatLease returns the label value recording l on version number num.
func formatLease(num string, l keymanager.Lease) string {
	v := num + "-" + strconv.FormatInt(l.Renewed.UnixMilli(), 10)
	if l.Pending {
		v += pendingSuffix
	}
	return v
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
// the leases on version that leases holds: those of other holders on the
// version that leases no longer holds are dropped, leases on other
// versions are kept, and beyond keymanager.MaxLeases (or beyond Cloud KMS's
// 64 labels, on a key labelled before key_labels was shortened) the oldest
// go: a key that cannot be kept alive is worse than a lease fewer.
func setLeases(labels map[string]string, keyName, version string, leases []keymanager.Lease) {
	num := versionNumber(version)
	for _, l := range leasesOf(keyName, labels) {
		if l.Ref == version {
			delete(labels, labelLeasePrefix+l.Holder)
		}
	}
	for _, l := range leases {
		if l.Ref == version && validHolder(l.Holder) && l.Renewed.UnixMilli() > 0 {
			labels[labelLeasePrefix+l.Holder] = formatLease(num, l)
		}
	}
	all := leasesOf(keyName, labels)
	slices.SortFunc(all, func(a, b keymanager.Lease) int { return a.Renewed.Compare(b.Renewed) })
	for len(all) > keymanager.MaxLeases || (len(labels) > maxLabels && len(all) > 1) {
		delete(labels, labelLeasePrefix+all[0].Holder)
		all = all[1:]
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
