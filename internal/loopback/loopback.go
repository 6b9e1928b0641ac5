// Package loopback tells whether a host names this machine. Both backends
// accept plaintext or test-only settings only for such hosts, where nothing
// but a local emulator can answer, so they must agree on what counts.
package loopback

import (
	"net/netip"
	"strings"
)

// Host reports whether host is localhost (or a name under .localhost, which
// RFC 6761 reserves for this machine) or a loopback address (127.0.0.0/8,
// ::1, with or without brackets). Names are not resolved: a name that
// happens to resolve to 127.0.0.1 does not count, since DNS may change.
func Host(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil && a.IsLoopback()
}
