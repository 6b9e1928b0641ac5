package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/hcl/ast"

	"github.com/kmskeeper/kmskeeper/engine"
)

// DefaultMaxKeyCreationsPerHour is max_key_creations_per_hour when unset.
const DefaultMaxKeyCreationsPerHour = 10

// maxKeyCreationsCeiling is the largest max_key_creations_per_hour accepted:
// SPIRE retries a failed preparation every 10 s, so 360 an hour is no guard.
const maxKeyCreationsCeiling = 360

// maxIdentifierValueLen is the longest key_identifier_value SPIRE's built-in
// plugins accept; backends may restrict it further.
const maxIdentifierValueLen = 256

// Parse decodes plugin_data (HCL v1, as SPIRE's plugins decode it), selects
// the backend kind by its selector key, and runs every static check. It never
// writes and never calls the network, so Validate can run it.
//
// It reports every problem it finds, as a Problems, not only the first: an
// unknown key does not hide a wrong value of a known one, nor a problem of
// the backend's keys one of the common keys. Only what leaves nothing to
// check stops it early: text that is not HCL, and plugin_data that names no
// backend or two (the backend decides which keys are valid).
func Parse(text, trustDomain string, kinds []Kind) (*Config, error) {
	if strings.TrimSpace(trustDomain) == "" {
		return nil, errors.New("the trust domain is empty: SPIRE passes it in the core configuration (trust_domain in server.conf)")
	}
	file, err := ParseHCL("plugin_data", text, knownKeys(kinds))
	if err != nil {
		return nil, err
	}
	list, ok := file.Node.(*ast.ObjectList)
	if !ok {
		return nil, errors.New("plugin_data is not an HCL object")
	}
	var problems Problems
	rest, migrateItems := splitKey(list, migrateKey)
	c, err := parseList(rest, trustDomain, kinds, true)
	problems.add(err)
	switch len(migrateItems) {
	case 0:
	case 1:
		p, err := parsePredecessor(migrateItems[0], trustDomain, kinds)
		problems.add(err)
		if c != nil {
			c.Predecessor = p
		}
	default:
		problems.add(errors.New("migrate_from is set more than once; a server migrates from one place"))
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// parseList decodes and checks one backend configuration. allowMigrate says
// whether migrate_from is a valid key at this level. It returns the
// configuration, when a backend kind could be selected, together with every
// problem found (a Problems, or nil): the caller discards the configuration
// when there is a problem.
func parseList(list *ast.ObjectList, trustDomain string, kinds []Kind, allowMigrate bool) (*Config, error) {
	var problems Problems
	present, err := topLevelKeys(list)
	problems.add(err)
	kind, err := selectKind(present, kinds)
	if err != nil {
		problems.add(err)
		return nil, problems.err()
	}
	backend := kind.New()
	known := append(hclKeys(&Common{}), hclKeys(backend)...)
	if allowMigrate {
		known = append(known, migrateKey)
	}
	slices.Sort(known)
	for _, k := range present {
		if !slices.Contains(known, k) {
			problems.add(fmt.Errorf("unknown configuration key %q for %s; valid keys are: %s", k, kind.Name, strings.Join(known, ", ")))
		}
	}

	c := &Config{Kind: kind, Backend: backend}
	failed, err := decodeKeys(&c.Common, list)
	problems.add(err)
	problems.add(c.checkCommon(failed))
	// A key of the backend's that did not decode is left at its zero value,
	// which the backend's checks would report again as unset: they run only
	// on values that decoded.
	if err := decode(backend, list); err != nil {
		problems.add(err)
	} else {
		problems.add(backend.Check(trustDomain))
		if v := c.Common.KeyIdentifierValue; v != "" && len(v) <= maxIdentifierValueLen {
			if err := c.checkServerID(v); err != nil {
				problems.add(fmt.Errorf("key_identifier_value %q cannot be used with %s: %w", v, kind.Name, err))
			}
		}
	}
	if w, ok := backend.(Warner); ok {
		c.Warnings = append(c.Warnings, w.Warnings()...)
		slices.Sort(c.Warnings)
	}
	return c, problems.err()
}

// splitKey separates the items named key from the others.
func splitKey(list *ast.ObjectList, key string) (rest *ast.ObjectList, named []*ast.ObjectItem) {
	rest = &ast.ObjectList{}
	for _, item := range list.Items {
		if k, ok := itemKey(item); ok && k == key {
			named = append(named, item)
			continue
		}
		rest.Items = append(rest.Items, item)
	}
	return rest, named
}

// checkCommon checks the settings every backend shares and fills in their
// defaults, returning every problem found (a Problems, or nil). undecoded
// are the keys whose value did not decode: already reported, they are not
// reported again as missing.
func (c *Config) checkCommon(undecoded []string) error {
	var problems Problems
	cm := &c.Common
	if cm.KeyMetadataFile != "" {
		if cm.KeyIdentifierFile != "" {
			problems.add(errors.New("key_metadata_file and key_identifier_file are both set: key_metadata_file is the deprecated name of key_identifier_file; keep only key_identifier_file"))
		} else {
			c.Warnings = append(c.Warnings, "key_metadata_file is deprecated: rename it to key_identifier_file (the file is read the same way)")
			cm.KeyIdentifierFile = cm.KeyMetadataFile
			cm.KeyMetadataFile = ""
		}
	}
	identifierUndecoded := slices.ContainsFunc(undecoded, func(k string) bool {
		return k == "key_identifier_file" || k == "key_identifier_value" || k == "key_metadata_file"
	})
	switch {
	case cm.KeyIdentifierFile == "" && cm.KeyIdentifierValue == "" && !identifierUndecoded:
		problems.add(errors.New("set key_identifier_file (a path where the server's ID is kept) or key_identifier_value (a fixed server ID)"))
	case cm.KeyIdentifierFile != "" && cm.KeyIdentifierValue != "":
		problems.add(errors.New("key_identifier_file and key_identifier_value are both set: keep only one"))
	case len(cm.KeyIdentifierValue) > maxIdentifierValueLen:
		problems.add(fmt.Errorf("key_identifier_value is %d characters long; at most %d are allowed: shorten it", len(cm.KeyIdentifierValue), maxIdentifierValueLen))
	}
	switch n := cm.MaxKeyCreationsPerHour; {
	case n == 0:
		cm.MaxKeyCreationsPerHour = DefaultMaxKeyCreationsPerHour
	case n < 0 || n > maxKeyCreationsCeiling:
		problems.add(fmt.Errorf("max_key_creations_per_hour is %d; it must be between 1 and %d (default %d)", n, maxKeyCreationsCeiling, DefaultMaxKeyCreationsPerHour))
	}
	var err error
	cm.schedule.LivenessInterval, err = parseInterval("liveness_interval", cm.LivenessInterval)
	problems.add(err)
	cm.schedule.CleanupInterval, err = parseInterval("cleanup_interval", cm.CleanupInterval)
	problems.add(err)
	for _, key := range []string{"cleanup_interval", "liveness_interval"} {
		d := cm.schedule.LivenessInterval
		if key == "cleanup_interval" {
			d = cm.schedule.CleanupInterval
		}
		if d > 0 && d < shortInterval {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s = %q is shorter than %s: intervals this short are meant for tests and cost a cloud call per pass", key, d, shortInterval))
		}
	}
	slices.Sort(c.Warnings)
	return problems.err()
}

// minInterval is the shortest liveness_interval and cleanup_interval
// accepted. It is far below any sensible production value so that tests of
// the built binary (crash, HA) can drive many passes in seconds; values below
// shortInterval are accepted with a warning.
const (
	minInterval   = time.Second
	shortInterval = time.Minute
)

// intervalLimit returns the longest value accepted for an interval setting
// and why it is the longest, for the error that refuses a longer one.
//
// liveness_interval: at most the keep-alive age. The liveness pass keeps a
// served key alive once its last update is older than KeepAliveAge, checking
// every liveness_interval, so a served key's last update is up to
// KeepAliveAge + liveness_interval old when every pass succeeds, and each
// failed pass adds an interval; a peer retires another server's key once its
// last update is older than StaleAfter. Up to the keep-alive age, a served
// key stays younger than StaleAfter by at least an interval through
// StaleAfter/KeepAliveAge - 3 failed passes in a row (11 with the defaults);
// beyond it, the interval rather than the keep-alive age decides how old a
// live key gets (400h let it pass 14 days with no failure at all), and every
// serving lease lasts longer (KeepAliveAge + 2 x liveness_interval).
//
// cleanup_interval: at most the stale period. No key's safety depends on
// cleanup (it only retires), but passes further apart than StaleAfter leave
// a crashed server's keys, and this server's superseded generations, billed
// for more than twice the period a trust domain agreed means "gone", and
// delay by as much the cleanup's report of two processes wrongly sharing a
// server ID.
func intervalLimit(key string) (time.Duration, string) {
	keepAlive, stale := engine.DefaultKeepAliveAge, engine.DefaultStaleAfter
	days := int(stale / (24 * time.Hour))
	switch key {
	case "liveness_interval":
		return keepAlive, fmt.Sprintf("the plugin keeps a key in use alive once its last update is %s old, checking every liveness_interval, and peer servers retire a key not updated for %s (%d days) as abandoned; with at most %s between checks a key in use is at most %s old, and stays clear of %d days through %d failed passes in a row, while a longer interval lets a key SPIRE still uses look abandoned to its peers",
			formatDuration(keepAlive), formatDuration(stale), days, formatDuration(keepAlive), formatDuration(2*keepAlive), days, int(stale/keepAlive)-3)
	case "cleanup_interval":
		return stale, fmt.Sprintf("keys not updated for %s (%d days) are abandoned and cleanup retires them; passes further apart than that leave abandoned and superseded keys billed for more than twice that period",
			formatDuration(stale), days)
	}
	return 0, ""
}

// parseInterval parses an optional duration setting between minInterval and
// its intervalLimit.
func parseInterval(key, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s = %q is not a duration such as \"6h\" or \"30m\"", key, v)
	}
	if d < minInterval {
		return 0, fmt.Errorf("%s = %q is shorter than the minimum of %s", key, v, minInterval)
	}
	if max, why := intervalLimit(key); d > max {
		return 0, fmt.Errorf("%s = %q is longer than the maximum of %s: %s", key, v, formatDuration(max), why)
	}
	return d, nil
}

// formatDuration writes d as a person would: "24h", "90m", not "24h0m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// selectKind picks the backend kind whose selector key is present.
func selectKind(present []string, kinds []Kind) (Kind, error) {
	var found []Kind
	var selectors []string
	for _, k := range kinds {
		selectors = append(selectors, k.Selector)
		if slices.Contains(present, k.Selector) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		if len(kinds) == 0 {
			return Kind{}, errors.New("this build of kmskeeper has no backend")
		}
		return Kind{}, fmt.Errorf("plugin_data names no backend: set one of %s", strings.Join(selectors, ", "))
	default:
		var names []string
		for _, k := range found {
			names = append(names, k.Selector+" ("+k.Name+")")
		}
		return Kind{}, fmt.Errorf("plugin_data names more than one backend: %s; keep only one", strings.Join(names, " and "))
	}
}

// topLevelKeys returns the keys of an HCL object list in order of
// appearance. A key HCL cannot read (see itemKey) is a problem: skipping it
// would let a misspelt key pass unnoticed. The keys that can be read are
// returned with the problems (a Problems, or nil), so that they are checked
// too.
func topLevelKeys(list *ast.ObjectList) ([]string, error) {
	var keys []string
	var problems Problems
	for _, item := range list.Items {
		if len(item.Keys) == 0 {
			continue
		}
		k, ok := itemKey(item)
		if !ok {
			problems.add(fmt.Errorf("a key on line %d cannot be read (%s): write keys as plain names (key_vault_uri = ...)", itemLine(item), notRepeated))
			continue
		}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys, problems.err()
}

// hclKeys returns the hcl tag names of the struct v points to, sorted.
func hclKeys(v any) []string {
	return slices.Sorted(maps.Keys(hclFields(v)))
}

// knownKeys returns every key some kind accepts, at the top level or in
// migrate_from: the names a parse error may cite.
func knownKeys(kinds []Kind) []string {
	known := hclKeys(&Predecessor{})
	for _, k := range kinds {
		known = append(known, k.Keys()...)
	}
	return known
}

// Keys returns every configuration key a kind accepts, common keys included,
// sorted: the list the docs and error messages give.
func (k Kind) Keys() []string {
	keys := append(hclKeys(&Common{}), hclKeys(k.New())...)
	keys = append(keys, migrateKey)
	slices.Sort(keys)
	return keys
}
