package config

import (
	"errors"
	"fmt"
	"strings"
)

// Problems is every problem found in one configuration. Parse returns it
// rather than stopping at the first problem, so that an operator (kmskeeper
// validate, or SPIRE's log of a refused Configure) fixes a file in one pass
// instead of one problem per run. Each element names the key it is about and
// what to do. A backend's Check may return a Problems to report several
// problems of its own keys; Parse lists them one by one.
type Problems []error

// Error lists the problems on one line, so that SPIRE's log keeps them
// together: a single problem reads exactly as it would alone.
func (p Problems) Error() string {
	switch len(p) {
	case 0:
		return "no problems"
	case 1:
		return p[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d configuration problems:", len(p))
	for i, e := range p {
		sep := ";"
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s (%d) %s", sep, i+1, e.Error())
	}
	return b.String()
}

// Unwrap returns the problems, so that errors.Is and errors.As see each.
func (p Problems) Unwrap() []error { return p }

// List returns the problems err holds: the elements of a Problems found in
// err's chain (each with the text err's wrappers put before it, such as the
// file it came from), or err alone.
func List(err error) []error {
	if err == nil {
		return nil
	}
	var p Problems
	if !errors.As(err, &p) || len(p) == 0 {
		return []error{err}
	}
	prefix, ok := strings.CutSuffix(err.Error(), p.Error())
	if !ok {
		prefix = ""
	}
	out := make([]error, len(p))
	for i, e := range p {
		if prefix == "" {
			out[i] = e
			continue
		}
		out[i] = fmt.Errorf("%s%w", prefix, e)
	}
	return out
}

// add appends err to p, one element per problem when err is itself a
// Problems; nil is ignored.
func (p *Problems) add(err error) {
	var more Problems
	switch {
	case err == nil:
	case errors.As(err, &more) && err.Error() == more.Error():
		*p = append(*p, more...)
	default:
		*p = append(*p, err)
	}
}

// addf appends each problem of err with prefix before it (migrate_from's
// problems say they are migrate_from's).
func (p *Problems) addf(prefix string, err error) {
	for _, e := range List(err) {
		p.add(fmt.Errorf("%s: %w", prefix, e))
	}
}

// err returns p as an error: nil when there is no problem.
func (p Problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return p
}
