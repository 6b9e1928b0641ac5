package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/parser"
)

// ParseHCL parses HCL v1 text (or JSON, as HCL does when the text starts
// with '{'); name says what the text is in messages ("plugin_data", or the
// path of a server.conf an operator command reads). HCL's own messages quote
// the text they stumbled on, and configuration text can hold a credential:
// an app_secret whose quotes a template dropped came back whole in
// "Unknown token: 5:14 IDENT <secret>". So the error returned keeps HCL's
// line and column and a description that holds no input text
// (syntaxDescription), and names the key assigned last before that position
// among known (names a user can read in the docs, never input text). A panic
// of the parser becomes an error too: no text may stop the plugin.
func ParseHCL(name, text string, known []string) (file *ast.File, err error) {
	defer func() {
		if recover() != nil {
			file, err = nil, fmt.Errorf("%s is not valid HCL: the HCL parser failed on it (%s); check its quotes, braces and brackets", name, notRepeated)
		}
	}()
	// A final line break changes nothing HCL or JSON means, and keeps HCL's
	// JSON scanner from reading past the end of the text, where it panics
	// (an escape such as "\0 cut off by the end of the text).
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	file, err = hcl.Parse(text)
	if err != nil {
		return nil, syntaxError(name, text, err, known)
	}
	return file, nil
}

// syntaxError describes an HCL parse error without quoting the input. It
// deliberately does not wrap err: err's text is what must not be shown.
func syntaxError(name, text string, err error, known []string) error {
	line, col, msg := errorPosition(err)
	where := ""
	if line > 0 {
		where = fmt.Sprintf(" at line %d, column %d", line, col) + nearKey(text, line, col, known)
	}
	return fmt.Errorf("%s is not valid HCL%s: %s", name, where, syntaxDescription(msg))
}

// errorPosition splits an HCL or JSON parse error into its position (0 when
// it has none) and its message.
func errorPosition(err error) (line, col int, msg string) {
	var pe *parser.PosError
	if errors.As(err, &pe) {
		return pe.Pos.Line, pe.Pos.Column, pe.Err.Error()
	}
	return cutPosition(err.Error())
}

// cutPosition separates a leading "line:column: " (the JSON scanner's
// format) or "At line:column: " (a nested HCL error) from a message.
func cutPosition(msg string) (line, col int, rest string) {
	s := strings.TrimPrefix(msg, "At ")
	pos, rest, ok := strings.Cut(s, ": ")
	if !ok {
		return 0, 0, msg
	}
	l, c, ok := strings.Cut(pos, ":")
	line, err1 := strconv.Atoi(l)
	col, err2 := strconv.Atoi(c)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, msg
	}
	return line, col, rest
}

// syntaxDescription returns HCL's message when it holds no input text (its
// fixed messages, and those naming only token types), a rewritten one for
// the messages that quote input, and a generic one for anything else: an
// allow-list, so that a message a newer HCL adds is never shown unchecked.
func syntaxDescription(msg string) string {
	switch msg {
	case "illegal UTF-8 encoding", "unexpected null character (0x00)", "unicode code point U+E123 reserved for internal use",
		"illegal char", "illegal character", "expected '/' for comment", "comment not terminated",
		"illegal hexadecimal number", "illegal octal number", "numbers cannot start with 0",
		"heredoc expected second '<', didn't see it", "heredoc not terminated", "invalid characters in heredoc anchor",
		"zero-length heredoc anchor", "literal not terminated", "illegal char escape", "no object keys found!", "illegal":
		return msg
	case "EOF token found":
		return "the text ends inside a block, list or assignment: check for a missing closing brace, bracket or value"
	}
	for _, prefix := range []string{
		"nested object expected: LBRACE got: ",
		"expected: IDENT | STRING got: ",
		"expected: IDENT | STRING | ASSIGN | LBRACE got: ",
		"object expected closing RBRACE got: ",
		"error parsing list, expected comma or list end, got: ",
		"unexpected token while parsing list: ",
		"expected: STRING got: ",
	} {
		if t, ok := strings.CutPrefix(msg, prefix); ok && tokenType(t) {
			return msg
		}
	}
	for _, prefix := range []string{"error while trying to parse object within list: ", "error while trying to parse list within list: "} {
		if inner, ok := strings.CutPrefix(msg, prefix); ok {
			_, _, inner = cutPosition(inner)
			return "in a list: " + syntaxDescription(inner)
		}
	}
	for _, prefix := range []string{"Unknown token: ", "Expected object value, got unknown token: ", "Expected object, got unknown token: "} {
		if tok, ok := strings.CutPrefix(msg, prefix); ok {
			// The token prints as "<line:col> <TYPE> <text>".
			f := strings.Fields(tok)
			switch {
			case len(f) >= 2 && f[1] == "IDENT":
				return "unquoted text where a value belongs: write string values in double quotes (" + notRepeated + ")"
			case len(f) >= 2 && tokenType(f[1]):
				return "unexpected " + f[1] + " where a value belongs (" + notRepeated + ")"
			}
			return "unexpected text where a value belongs (" + notRepeated + ")"
		}
	}
	switch {
	case strings.HasPrefix(msg, "key '") && strings.HasSuffix(msg, "' expected start of object ('{') or assignment ('=')"):
		return "text that is not followed by '=' or '{', often an unquoted value with a space or one that starts with a digit: write string values in double quotes (" + notRepeated + ")"
	case strings.HasPrefix(msg, "illegal char: "):
		return "illegal char"
	}
	return "a syntax error (HCL's description is not repeated here, as it may quote a secret)"
}

// tokenType reports whether s is the name of an HCL or JSON token type:
// a message naming only these holds no input text.
func tokenType(s string) bool {
	switch s {
	case "ILLEGAL", "EOF", "COMMENT", "IDENT", "NUMBER", "FLOAT", "BOOL", "STRING", "HEREDOC", "NULL",
		"LBRACK", "LBRACE", "COMMA", "PERIOD", "COLON", "RBRACK", "RBRACE", "ASSIGN", "ADD", "SUB":
		return true
	}
	return false
}

// nearKey names the configuration key assigned last before the error's
// position (line and column, 1-based), on its line or an earlier one, as
// " (key k)" or " (after key k on line n)"; "" when none is found. Only names
// in known are returned, so text that merely looks like a key (part of a
// secret) is never quoted.
func nearKey(text string, line, col int, known []string) string {
	lines := strings.Split(text, "\n")
	for n := min(line, len(lines)); n >= 1; n-- {
		l := lines[n-1]
		if r := []rune(l); n == line && col >= 1 && col < len(r) {
			l = string(r[:col])
		}
		k := lastKey(l, known)
		switch {
		case k == "":
			continue
		case n == line:
			return " (key " + k + ")"
		}
		return fmt.Sprintf(" (after key %s on line %d)", k, n)
	}
	return ""
}

// lastKey returns the known key assigned last in a line of HCL or JSON: a
// name, bare or in double quotes, not part of a longer name, followed by
// '=', '{' or ':'.
func lastKey(l string, known []string) string {
	best, at := "", -1
	for _, k := range known {
		for i := strings.Index(l, k); i >= 0; {
			rest := strings.TrimPrefix(l[i+len(k):], `"`)
			rest = strings.TrimLeft(rest, " \t")
			if i > at && (i == 0 || !nameByte(l[i-1])) && rest != "" && strings.ContainsRune("={:", rune(rest[0])) {
				best, at = k, i
			}
			next := strings.Index(l[i+1:], k)
			if next < 0 {
				break
			}
			i += 1 + next
		}
	}
	return best
}

// nameByte reports whether b can be part of a configuration key's name.
func nameByte(b byte) bool {
	return b == '_' || b == '-' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}
