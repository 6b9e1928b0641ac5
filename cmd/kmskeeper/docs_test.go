package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDocsListEveryConfigurationKey checks that docs/configuration.md
// documents every key every release backend accepts.
func TestDocsListEveryConfigurationKey(t *testing.T) {
	doc := readDoc(t, "configuration.md")
	for _, k := range releaseKinds() {
		for _, key := range k.Keys() {
			if !strings.Contains(doc, "`"+key+"`") {
				t.Errorf("docs/configuration.md does not document %s's key `%s`", k.Name, key)
			}
		}
	}
}

// errorSources are the packages whose error messages reach SPIRE (and so an
// operator's logs): every one must be explained in docs/troubleshooting.md.
var errorSources = []string{"engine", "config", "plugin", "predecessor", "backend/azurekv", "backend/gcpkms"}

// TestDocsExplainEveryError checks that docs/troubleshooting.md contains the
// distinctive text of every error message the plugin can return: messages
// built with engine.Errorf or status.Errorf anywhere, and every message of
// the configuration and migration packages (they become InvalidArgument).
func TestDocsExplainEveryError(t *testing.T) {
	doc := normalize(readDoc(t, "troubleshooting.md"))
	msgs := errorMessages(t)
	if len(msgs) < 20 {
		t.Fatalf("found only %d error messages in the code; the scanner is broken", len(msgs))
	}
	for _, m := range msgs {
		frag := distinctive(m.format)
		if frag == "" {
			continue
		}
		if !strings.Contains(doc, normalize(frag)) {
			t.Errorf("docs/troubleshooting.md does not explain %s: %q (looked for %q)", m.pos, m.format, frag)
		}
	}
}

type message struct {
	pos    string
	format string
}

func errorMessages(t *testing.T) []message {
	t.Helper()
	root := filepath.Join("..", "..")
	var out []message
	fset := token.NewFileSet()
	for _, dir := range errorSources {
		files, _ := filepath.Glob(filepath.Join(root, dir, "*.go"))
		allPlain := dir == "config" || dir == "predecessor" || strings.HasPrefix(dir, "backend/")
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				name := calleeName(call.Fun)
				var arg ast.Expr
				switch {
				case name == "engine.Errorf" || name == "status.Errorf" || name == "status.Error" || (dir == "engine" && name == "Errorf"):
					if len(call.Args) >= 2 {
						arg = call.Args[1]
					}
				case allPlain && (name == "fmt.Errorf" || name == "errors.New"):
					if len(call.Args) >= 1 {
						arg = call.Args[0]
					}
				}
				if lit, ok := arg.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, err := strconv.Unquote(lit.Value)
					if err == nil {
						out = append(out, message{pos: fset.Position(lit.Pos()).String(), format: s})
					}
				}
				return true
			})
		}
	}
	return out
}

func calleeName(e ast.Expr) string {
	switch f := e.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		if x, ok := f.X.(*ast.Ident); ok {
			return x.Name + "." + f.Sel.Name
		}
	}
	return ""
}

var verb = regexp.MustCompile(`%[-+# 0]*[0-9.*]*[a-zA-Z%]`)

// distinctive returns the longest literal part of a format string, or ""
// when the message is only a prefix of a wrapped error ("listing: %w").
func distinctive(format string) string {
	parts := verb.Split(format, -1)
	slices.SortStableFunc(parts, func(a, b string) int { return len(strings.TrimSpace(b)) - len(strings.TrimSpace(a)) })
	best := strings.Trim(parts[0], " :;,.()\"'")
	if len(best) < 12 {
		return ""
	}
	return best
}

func normalize(s string) string {
	s = strings.ReplaceAll(s, "`", "")
	s = strings.ReplaceAll(s, "\\", "")
	return strings.Join(strings.Fields(s), " ")
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", name))
	if err != nil {
		t.Fatalf("docs/%s: %v", name, err)
	}
	return string(data)
}

// TestReadmeLayoutMatchesTree checks README.md's layout table against the
// repository: every folder it names exists, and every folder that holds Go
// packages is named (itself or through its parent), so that a newcomer who
// reads the table finds each package.
func TestReadmeLayoutMatchesTree(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, m := range regexp.MustCompile("(?m)^\\| (`[^|]+)\\|").FindAllStringSubmatch(string(b), -1) {
		for _, f := range regexp.MustCompile("`([a-z0-9/]+/)`").FindAllStringSubmatch(m[1], -1) {
			named = append(named, strings.TrimSuffix(f[1], "/"))
		}
	}
	if len(named) == 0 {
		t.Fatal("README.md has no layout table")
	}
	for _, n := range named {
		if fi, err := os.Stat(filepath.Join(root, n)); err != nil || !fi.IsDir() {
			t.Errorf("README.md names folder %s/, which does not exist", n)
		}
	}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != root || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		dir, _ := filepath.Rel(root, filepath.Dir(p))
		dir = filepath.ToSlash(dir)
		for _, n := range named {
			if dir == n || strings.HasPrefix(dir, n+"/") {
				return nil
			}
		}
		t.Errorf("README.md's layout table does not name %s/", dir)
		return filepath.SkipDir
	})
	if err != nil {
		t.Fatal(err)
	}
}
