package gcpkms

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// labelLeasePrefix starts the label of one serving lease on a CryptoKey:
// spire-lease-<holder> = "<version number>-<unix milliseconds>". A process
// serves one version of a key at a time, so one label per holder is enough;
// at most keymanager.MaxLeases are kept on a key.
const labelLeasePrefix = "spire-lease-"

// LeasesCoverKeyID reports that the leases of a generation the backend
// returns cover every version of its CryptoKey (keymanager.SiblingLeases):
// they are all labels of the one CryptoKey.
func (b *Backend) LeasesCoverKeyID() bool { return true }

// leasesOf reads the leases recorded on a CryptoKey. Malformed labels are
// skipped: a lease only ever keeps a version, so losing one can at worst let
// a version be retired as it would have been without leases.
func leasesOf(keyName string, labels map[string]string) []keymanager.Lease {
	var out []keymanager.Lease
	for k, v := range labels {
		holder, ok := strings.CutPrefix(k, labelLeasePrefix)
		if !ok || holder == "" {
			continue
		}
		num, ms, ok := strings.Cut(v, "-")
		n, err1 := strconv.ParseUint(num, 10, 64)
		t, err2 := strconv.ParseInt(ms, 10, 64)
		if !ok || err1 != nil || err2 != nil || n == 0 || t <= 0 {
			continue
		}
		out = append(out, keymanager.Lease{Holder: holder, Ref: keyName + "/cryptoKeyVersions/" + num, Renewed: time.UnixMilli(t)})
	}
	slices.SortFunc(out, func(a, b keymanager.Lease) int { return strings.Compare(a.Holder, b.Holder) })
	return out
}

// setLeases records in labels (a key's whole label set, changed in place)
// the leases on version that g.Leases holds: those of other holders on the
// version that g.Leases no longer holds are dropped, leases on other
// versions are kept, and beyond keymanager.MaxLeases (or beyond Cloud KMS's
// 64 labels, on a key labelled before key_labels was shortened) the oldest
// go: a key that cannot be kept alive is worse than a lease fewer.
func setLeases(labels map[string]string, keyName, version string, leases []keymanager.Lease) {
	_, num, _ := strings.Cut(version, "/cryptoKeyVersions/")
	for _, l := range leasesOf(keyName, labels) {
		if l.Ref == version {
			delete(labels, labelLeasePrefix+l.Holder)
		}
	}
	for _, l := range leases {
		if l.Ref == version && validHolder(l.Holder) {
			labels[labelLeasePrefix+l.Holder] = num + "-" + strconv.FormatInt(l.Renewed.UnixMilli(), 10)
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
