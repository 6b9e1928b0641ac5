package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
)

// notRepeated says, in an error, that text of the configuration is left out
// on purpose.
const notRepeated = "the text is not repeated here, as it may hold a secret"

// Decode decodes the items of list that name a field of the struct v points
// to (by its hcl tag), as Parse decodes plugin_data, for callers that read
// configuration around it (the operator commands read SPIRE's server.conf).
// Other items are ignored.
func Decode(v any, list *ast.ObjectList) error { return decode(v, list) }

// decode decodes each item of list that names a field of the struct v points
// to, one item at a time, so that an error names the key whose value is
// wrong; every such key is reported (a Problems), not only the first. Each value's shape is checked first (misfit): HCL v1's decoder
// panics on some shapes (an empty block where a string belongs makes it index
// an empty list to report the error) and quotes the value in some errors (a
// number it cannot parse), and a value may be a secret. The decoder's own
// errors are therefore never shown, and a panic the checks did not foresee is
// recovered into an error naming the key.
func decode(v any, list *ast.ObjectList) error {
	_, err := decodeKeys(v, list)
	return err
}

// decodeKeys is decode, also returning the keys whose value did not decode
// (and were left at their zero value), so that later checks do not report
// them again as unset.
func decodeKeys(v any, list *ast.ObjectList) (failed []string, err error) {
	var problems Problems
	fields := hclFields(v)
	for _, item := range list.Items {
		key, ok := itemKey(item)
		t, mine := fields[key]
		if !ok || !mine {
			continue
		}
		where := key
		if line := itemLine(item); line > 0 {
			where = fmt.Sprintf("%s (line %d)", key, line)
		}
		if found := misfitItem(t, item); found != "" {
			problems.add(fmt.Errorf("configuration key %s has a value of the wrong type: want %s, found %s", where, want(key, t), found))
			failed = append(failed, key)
			continue
		}
		panicked, err := decodeItem(v, item)
		switch {
		case panicked:
			problems.add(fmt.Errorf("configuration key %s: the HCL decoder failed on its value (%s); write it as %s", where, notRepeated, want(key, t)))
			failed = append(failed, key)
		case err != nil:
			// err is not wrapped: the decoder's messages may quote the value.
			problems.add(fmt.Errorf("configuration key %s has a value of the wrong type: want %s", where, want(key, t)))
			failed = append(failed, key)
		}
	}
	return failed, problems.err()
}

// decodeItem runs HCL's decoder on one item, reporting a panic rather than
// letting it stop the plugin: the last line of defence behind misfit.
func decodeItem(v any, item *ast.ObjectItem) (panicked bool, err error) {
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	return false, hcl.DecodeObject(v, &ast.ObjectList{Items: []*ast.ObjectItem{item}})
}

// itemLine returns the line an item starts on, 0 when unknown: HCL's JSON
// parser leaves keys and values without a position and records only the
// colon's.
func itemLine(item *ast.ObjectItem) int {
	switch {
	case len(item.Keys) > 0 && item.Keys[0].Token.Pos.Line > 0:
		return item.Keys[0].Token.Pos.Line
	case item.Assign.Line > 0:
		return item.Assign.Line
	}
	switch v := item.Val.(type) {
	case *ast.LiteralType:
		return v.Token.Pos.Line
	case *ast.ObjectType:
		return v.Lbrace.Line
	case *ast.ListType:
		return v.Lbrack.Line
	}
	return 0
}

// itemKey returns the name of an item's first key. HCL's Token.Value panics
// on a token it cannot unquote (a JSON key with an escape Go's strconv does
// not know, such as "\/"), so the name is read under recover.
func itemKey(item *ast.ObjectItem) (key string, ok bool) {
	if len(item.Keys) == 0 {
		return "", false
	}
	v, ok := tokenValue(item.Keys[0].Token)
	key, isString := v.(string)
	return key, ok && isString
}

// tokenValue is Token.Value without its panics.
func tokenValue(t token.Token) (v any, ok bool) {
	defer func() {
		if recover() != nil {
			v, ok = nil, false
		}
	}()
	return t.Value(), true
}

// misfitItem is misfit for a top-level item: it must be one assignment
// (key = value or key { ... }), not a labelled block (key "label" { ... }),
// which the decoder would read as a map of blocks.
func misfitItem(t reflect.Type, item *ast.ObjectItem) string {
	if len(item.Keys) != 1 {
		return "a labelled block (key \"label\" { ... })"
	}
	return misfit(t, item.Val)
}

// misfit returns "" when HCL's decoder turns n into a value of type t
// without an error or a panic, and otherwise what n is instead, in words
// that never quote its text. Kinds it does not know (no configuration uses
// them) are left to the decoder.
func misfit(t reflect.Type, n ast.Node) string {
	lit, isLit := n.(*ast.LiteralType)
	switch t.Kind() {
	case reflect.String:
		switch {
		case !isLit:
		case lit.Token.Type == token.NUMBER:
			return ""
		case lit.Token.Type == token.STRING || lit.Token.Type == token.HEREDOC:
			if _, ok := tokenValue(lit.Token); !ok {
				return "a string whose quotes or escapes HCL cannot read"
			}
			return ""
		}
	case reflect.Int, reflect.Int32, reflect.Int64:
		switch {
		case !isLit:
		case lit.Token.Type == token.NUMBER:
			if _, err := strconv.ParseInt(lit.Token.Text, 0, 0); err != nil {
				return "a number out of range"
			}
			return ""
		case lit.Token.Type == token.STRING:
			v, _ := tokenValue(lit.Token)
			s, _ := v.(string)
			if _, err := strconv.ParseInt(s, 0, 0); err != nil {
				return "a string that is not a whole number"
			}
			return ""
		}
	case reflect.Bool:
		if isLit && lit.Token.Type == token.BOOL {
			return ""
		}
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return ""
		}
		obj, ok := n.(*ast.ObjectType)
		if !ok {
			break
		}
		for _, item := range obj.List.Items {
			line := itemLine(item)
			if _, ok := itemKey(item); !ok {
				return fmt.Sprintf("a block whose entry on line %d has a name HCL cannot read", line)
			}
			if found := misfitItem(t.Elem(), item); found != "" {
				return fmt.Sprintf("a block whose entry on line %d is %s", line, found)
			}
		}
		return ""
	default:
		return ""
	}
	return nodeKind(n)
}

// nodeKind says what kind of value n is, without its text.
func nodeKind(n ast.Node) string {
	switch n := n.(type) {
	case *ast.ObjectType:
		return "a block"
	case *ast.ListType:
		return "a list"
	case *ast.LiteralType:
		switch n.Token.Type {
		case token.STRING, token.HEREDOC:
			return "a string"
		case token.NUMBER:
			return "a number"
		case token.FLOAT:
			return "a decimal number"
		case token.BOOL:
			return "true or false"
		}
	}
	return "a value of another kind"
}

// want says how a value of type t is written, for key.
func want(key string, t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string in double quotes"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.Map:
		if t.Elem().Kind() == reflect.String {
			return fmt.Sprintf(`a block of names and string values, such as %s = { name = "value" }`, key)
		}
		return "a block of names, each set to " + want("", t.Elem())
	}
	return "a value of type " + t.String()
}

// hclFields returns the hcl tag names of the struct v points to, with their
// field types.
func hclFields(v any) map[string]reflect.Type {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	fields := make(map[string]reflect.Type)
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	return fields
}
