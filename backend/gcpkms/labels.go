package gcpkms

import (
	"fmt"
	"maps"
	"slices"
	"unicode"
	"unicode/utf8"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Cloud KMS label rules (doc "Labeling keys").
const (
	maxLabels      = 64
	maxLabelKeyLen = 63
	maxLabelValLen = 63
	// fixedOwnLabels are the plugin's labels other than leases:
	// spire-server-td, spire-server-id, spire-active, spire-last-update
	// (those of the built-in plugin) and spire-recent.
	fixedOwnLabels = 5
	// ownLabels is how many labels the plugin writes itself: the fixed
	// ones and up to engine.MaxLeases leases.
	ownLabels = fixedOwnLabels + engine.MaxLeases
)

// labelRune reports whether r may appear in a label key or value: lowercase
// letters (international ones included), digits, '_' and '-'.
func labelRune(r rune) bool {
	return unicode.IsLower(r) || unicode.Is(unicode.Lo, r) || unicode.IsDigit(r) || r == '_' || r == '-'
}

// checkUserLabels checks key_labels against Cloud KMS's label rules and the
// plugin's reserved prefix.
func checkUserLabels(labels map[string]string) error {
	if n := len(labels); n > maxLabels-ownLabels {
		return fmt.Errorf("key_labels has %d labels; Cloud KMS allows %d per key and the plugin writes up to %d of its own (%d, and up to %d serving leases), so at most %d fit", n, maxLabels, ownLabels, fixedOwnLabels, engine.MaxLeases, maxLabels-ownLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := labels[k]
		switch first, _ := utf8.DecodeRuneInString(k); {
		case len(k) >= len(reservedLabelPrefix) && k[:len(reservedLabelPrefix)] == reservedLabelPrefix:
			return fmt.Errorf("key_labels: label %q uses the reserved prefix %q: the plugin's own labels use it; pick another name", k, reservedLabelPrefix)
		case k == "" || utf8.RuneCountInString(k) > maxLabelKeyLen:
			return fmt.Errorf("key_labels: label name %q must be 1 to %d characters long", k, maxLabelKeyLen)
		case !unicode.IsLower(first) && !unicode.Is(unicode.Lo, first):
			return fmt.Errorf("key_labels: label name %q must start with a lowercase letter", k)
		case !allRunes(k, labelRune):
			return fmt.Errorf("key_labels: label name %q may hold only lowercase letters, digits, '_' and '-'", k)
		case utf8.RuneCountInString(v) > maxLabelValLen:
			return fmt.Errorf("key_labels: the value of label %q is longer than %d characters", k, maxLabelValLen)
		case !allRunes(v, labelRune):
			return fmt.Errorf("key_labels: the value of label %q may hold only lowercase letters, digits, '_' and '-'", k)
		}
	}
	return nil
}

func allRunes(s string, ok func(rune) bool) bool {
	for _, r := range s {
		if !ok(r) {
			return false
		}
	}
	return true
}

// ownKeyLabels returns the labels an active key of this server carries:
// current holds what the key has now (labels set by others are kept), user
// the configured key_labels, and lastUpdate the spire-last-update value ("" to
// keep the current one).
func (b *Backend) ownKeyLabels(current map[string]string, lastUpdate string) map[string]string {
	out := maps.Clone(current)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, b.opts.Labels)
	out[labelTrustDomain] = b.tdLabel
	out[labelServerID] = b.opts.ServerID
	out[labelActive] = "true"
	if lastUpdate != "" {
		out[labelLastUpdate] = lastUpdate
	}
	return out
}
