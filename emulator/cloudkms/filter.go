package cloudkms

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// This file implements the list filter language of the service's "Sorting and
// filtering list results" page (an AIP-160 subset):
//
//	expr    = and
//	and     = or { ["AND"] or }          a space between terms also means AND
//	or      = unary { "OR" unary }        OR binds tighter than AND
//	unary   = ["NOT" | "-"] primary
//	primary = "(" expr ")" | field op value | field ":" "*"
//	op      = "=" | "!=" | "<" | ">" | "<=" | ">=" | "=>" | ":"
//
// Fields use dot syntax (labels.team, primary.state, version_template.algorithm).
// Values are bare words or quoted strings.
//
// Semantics the documentation leaves open, decided here:
//   - A field that is absent (a label the resource does not have, an unset
//     timestamp) matches no comparison: "=", "<", ">", "<=", ">=" and ":" are
//     false. "!=" is "NOT =", so an absent field matches "!=". This is why
//     SPIRE's `labels.spire-last-update < N` never matches keys that have no
//     spire-last-update label, as in the real service.
//   - "<", ">", "<=", ">=" on strings compare as integers when both sides are
//     integers (Unix seconds in SPIRE's labels), otherwise byte-wise.
//   - ":" is a case-insensitive substring match; "field:*" tests presence.
//   - Enum fields (state, purpose, algorithm, protection_level) take enum
//     names; an unknown name is InvalidArgument.
//   - Unknown fields are InvalidArgument.

// fieldKind is the type of a filterable field.
type fieldKind int

const (
	kindString fieldKind = iota + 1
	kindEnum
	kindTime
	kindBool
	kindDuration
	kindMap // "labels": only presence of a key via labels:key
)

// schema describes the filterable fields of one resource type.
type schema struct {
	fields map[string]fieldKind
	enums  map[string]map[string]int32 // enum field -> name -> number
	maps   map[string]bool             // map fields: "labels" -> labels.<k> is a string
}

// kind returns the kind of a field path.
func (sc *schema) kind(path string) (fieldKind, bool) {
	if k, ok := sc.fields[path]; ok {
		return k, true
	}
	if i := strings.IndexByte(path, '.'); i > 0 && sc.maps[path[:i]] && len(path) > i+1 {
		return kindString, true
	}
	if sc.maps[path] {
		return kindMap, true
	}
	return 0, false
}

// record is what a filter is evaluated against: field path -> value.
// An absent key means the field is absent.
type record interface {
	get(path string) (string, bool)
}

// filter is a compiled filter expression.
type filter interface {
	match(r record) bool
}

type andFilter []filter
type orFilter []filter
type notFilter struct{ f filter }
type cmpFilter struct {
	path  string
	kind  fieldKind
	op    string
	value string
	num   *big.Int
	t     time.Time
	d     time.Duration
	enum  int32
	enums map[string]int32
}

type matchAll struct{}

func (matchAll) match(record) bool { return true }

func (a andFilter) match(r record) bool {
	for _, f := range a {
		if !f.match(r) {
			return false
		}
	}
	return true
}

func (o orFilter) match(r record) bool {
	for _, f := range o {
		if f.match(r) {
			return true
		}
	}
	return false
}

func (n notFilter) match(r record) bool { return !n.f.match(r) }

func (c *cmpFilter) match(r record) bool {
	if c.op == "!=" {
		eq := *c
		eq.op = "="
		return !eq.match(r)
	}
	if c.kind == kindMap { // labels:key
		_, ok := r.get(c.path + "." + c.value)
		return ok
	}
	got, ok := r.get(c.path)
	if !ok {
		return false
	}
	if c.op == ":" && c.value == "*" {
		return true
	}
	var cmp int
	switch c.kind {
	case kindEnum:
		n, ok := c.enums[got]
		if !ok {
			return false
		}
		cmp = compareInts(int64(n), int64(c.enum))
	case kindTime:
		t, err := time.Parse(time.RFC3339Nano, got)
		if err != nil {
			return false
		}
		cmp = t.Compare(c.t)
	case kindDuration:
		d, err := time.ParseDuration(got)
		if err != nil {
			return false
		}
		cmp = compareInts(int64(d), int64(c.d))
	default:
		if c.op == ":" {
			return strings.Contains(strings.ToLower(got), strings.ToLower(c.value))
		}
		if c.num != nil {
			if n, ok := new(big.Int).SetString(got, 10); ok && c.op != "=" {
				cmp = n.Cmp(c.num)
				break
			}
		}
		cmp = strings.Compare(got, c.value)
	}
	switch c.op {
	case "=", ":":
		return cmp == 0
	case "<":
		return cmp < 0
	case ">":
		return cmp > 0
	case "<=", "=<":
		return cmp <= 0
	default: // ">=", "=>"
		return cmp >= 0
	}
}

func compareInts(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseFilter compiles s against sc. An empty filter matches everything.
func parseFilter(s string, sc *schema) (filter, error) {
	p := &filterParser{in: s, sc: sc}
	p.skip()
	if p.eof() {
		return matchAll{}, nil
	}
	f, err := p.and()
	if err == nil && !p.eof() {
		err = p.errorf("unexpected %q", p.rest())
	}
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Invalid filter %q: %v", s, err)
	}
	return f, nil
}

type filterParser struct {
	in  string
	pos int
	sc  *schema
}

func (p *filterParser) eof() bool    { return p.pos >= len(p.in) }
func (p *filterParser) rest() string { return p.in[p.pos:] }
func (p *filterParser) skip() {
	for !p.eof() && unicode.IsSpace(rune(p.in[p.pos])) {
		p.pos++
	}
}

func (p *filterParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at position %d: %s", p.pos, fmt.Sprintf(format, args...))
}

// keyword reports (and consumes) the keyword kw if it comes next as a word.
func (p *filterParser) keyword(kw string) bool {
	if !strings.HasPrefix(p.rest(), kw) {
		return false
	}
	end := p.pos + len(kw)
	if end < len(p.in) && !unicode.IsSpace(rune(p.in[end])) && p.in[end] != '(' {
		return false
	}
	p.pos = end
	return true
}

func (p *filterParser) and() (filter, error) {
	var terms andFilter
	for {
		f, err := p.or()
		if err != nil {
			return nil, err
		}
		terms = append(terms, f)
		p.skip()
		if p.eof() || p.in[p.pos] == ')' {
			break
		}
		if p.keyword("AND") {
			p.skip()
		}
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return terms, nil
}

func (p *filterParser) or() (filter, error) {
	var terms orFilter
	for {
		f, err := p.unary()
		if err != nil {
			return nil, err
		}
		terms = append(terms, f)
		save := p.pos
		p.skip()
		if !p.keyword("OR") {
			p.pos = save
			break
		}
		p.skip()
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return terms, nil
}

func (p *filterParser) unary() (filter, error) {
	p.skip()
	if p.keyword("NOT") {
		f, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notFilter{f}, nil
	}
	if !p.eof() && p.in[p.pos] == '-' {
		p.pos++
		f, err := p.primary()
		if err != nil {
			return nil, err
		}
		return notFilter{f}, nil
	}
	return p.primary()
}

func (p *filterParser) primary() (filter, error) {
	p.skip()
	if p.eof() {
		return nil, p.errorf("expected a restriction, found the end of the filter")
	}
	if p.in[p.pos] == '(' {
		p.pos++
		f, err := p.and()
		if err != nil {
			return nil, err
		}
		p.skip()
		if p.eof() || p.in[p.pos] != ')' {
			return nil, p.errorf("missing ')'")
		}
		p.pos++
		return f, nil
	}
	return p.comparison()
}

func isFieldByte(b byte) bool {
	return b == '_' || b == '-' || b == '.' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= 0x80
}

func (p *filterParser) comparison() (filter, error) {
	start := p.pos
	for !p.eof() && isFieldByte(p.in[p.pos]) {
		p.pos++
	}
	path := p.in[start:p.pos]
	if path == "" {
		return nil, p.errorf("expected a field name, found %q", p.rest())
	}
	kind, ok := p.sc.kind(path)
	if !ok {
		return nil, fmt.Errorf("unknown field %q", path)
	}
	p.skip()
	op := ""
	for _, o := range []string{"!=", "<=", ">=", "=>", "=<", "=", "<", ">", ":"} {
		if strings.HasPrefix(p.rest(), o) {
			op = o
			break
		}
	}
	if op == "" {
		return nil, p.errorf("expected a comparison operator after %q", path)
	}
	p.pos += len(op)
	p.skip()
	value, err := p.value()
	if err != nil {
		return nil, err
	}
	c := &cmpFilter{path: path, kind: kind, op: op, value: value}
	if op == ":" && value == "*" {
		if kind == kindMap {
			return nil, fmt.Errorf("%s:* is not supported; use %s.<key>:*", path, path)
		}
		return c, nil
	}
	switch kind {
	case kindMap:
		if op != ":" {
			return nil, fmt.Errorf("map field %q only supports ':' (use %s.<key> to compare values)", path, path)
		}
	case kindEnum:
		c.enums = p.sc.enums[path]
		n, ok := c.enums[value]
		if !ok {
			return nil, fmt.Errorf("invalid value %q for enum field %q", value, path)
		}
		c.enum = n
	case kindTime:
		t, err := time.Parse(time.RFC3339Nano, value)
		if err != nil {
			return nil, fmt.Errorf("invalid time %q for %q (want RFC 3339, e.g. 2019-06-20T01:30:15Z)", value, path)
		}
		c.t = t
	case kindDuration:
		d, err := time.ParseDuration(value)
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q for %q (e.g. 86400s)", value, path)
		}
		c.d = d
	case kindBool:
		if value != "true" && value != "false" {
			return nil, fmt.Errorf("invalid boolean %q for %q", value, path)
		}
	default:
		if n, ok := new(big.Int).SetString(value, 10); ok {
			c.num = n
		}
	}
	return c, nil
}

// value reads a quoted string or a bare word (which may contain ':' so that
// RFC 3339 times need no quotes).
func (p *filterParser) value() (string, error) {
	if p.eof() {
		return "", p.errorf("expected a value, found the end of the filter")
	}
	if q := p.in[p.pos]; q == '"' || q == '\'' {
		var b strings.Builder
		for i := p.pos + 1; i < len(p.in); i++ {
			switch c := p.in[i]; {
			case c == '\\' && i+1 < len(p.in):
				i++
				b.WriteByte(p.in[i])
			case c == q:
				p.pos = i + 1
				return b.String(), nil
			default:
				b.WriteByte(c)
			}
		}
		return "", p.errorf("unterminated string")
	}
	start := p.pos
	for !p.eof() {
		c := p.in[p.pos]
		if unicode.IsSpace(rune(c)) || c == '(' || c == ')' || c == '"' {
			break
		}
		p.pos++
	}
	if p.pos == start {
		return "", p.errorf("expected a value, found %q", p.rest())
	}
	return p.in[start:p.pos], nil
}

// mapRecord is a record backed by a map.
type mapRecord map[string]string

func (m mapRecord) get(path string) (string, bool) {
	v, ok := m[path]
	return v, ok
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func formatBool(b bool) string { return strconv.FormatBool(b) }
