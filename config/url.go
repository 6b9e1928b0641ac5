package config

import "strings"

// RedactURL returns raw with every part of a URL that can carry a credential
// replaced by REDACTED: the user information (user:password@, and to be
// safe everything before the last '@' when raw has no "://"), the query (a
// SAS token's sig=...) and the fragment. Settings that hold a URL never
// accept those parts, and their errors show only this form, so that a
// secret pasted into a URL never reaches an error or a log. It works on the
// text, not on a parsed URL, so that a URL that does not parse is redacted
// too.
func RedactURL(raw string) string {
	s, tail := raw, ""
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s, tail = s[:i], s[i:i+1]+"REDACTED"
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		start := 0
		if i := strings.Index(s, "://"); i >= 0 && i < at {
			start = i + len("://")
		}
		s = s[:start] + "REDACTED" + s[at:]
	}
	return s + tail
}
