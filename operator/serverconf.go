// Package operator implements kmskeeper's operator commands (validate, keys
// list, gc): they read the same configuration as the plugin, build the same
// backend with the same credential chain, and run the engine's own checks and
// cleanup logic, so what they report is what the plugin does.
package operator

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/printer"

	"github.com/kmskeeper/kmskeeper/config"
)

// Source is a plugin configuration as the operator commands read it.
type Source struct {
	// PluginData is the HCL text SPIRE would pass to Configure.
	PluginData string
	// TrustDomain is server.conf's trust_domain, if the file had one.
	TrustDomain string
	// KeyTypes are the key types server.conf asks SPIRE for (ca_key_type,
	// jwt_key_type), SPIRE's defaults when not set.
	KeyTypes []string
	// Origin says where PluginData came from, for messages.
	Origin string
}

// ReadSource reads path: either a SPIRE server.conf (the KeyManager block
// named plugin, or the only one, is used; plugin_data or plugin_data_file),
// or a file holding just the plugin_data body. Its errors never quote the
// file's text, which may hold a credential (config.ParseHCL, config.Decode),
// and a panic of HCL's AST helpers on text they cannot read (a key they
// cannot unquote) is an error, not a crash of the command.
func ReadSource(path, plugin string) (src *Source, err error) {
	defer func() {
		if recover() != nil {
			src, err = nil, fmt.Errorf("%s cannot be read as a SPIRE server.conf or plugin_data: HCL failed on a key or value (the text is not repeated here, as it may hold a secret); check its quotes and escapes", path)
		}
	}()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	file, err := config.ParseHCL(path, string(data), serverConfKeys())
	if err != nil {
		return nil, err
	}
	root, ok := file.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("%s is not an HCL object", path)
	}
	plugins := root.Filter("plugins")
	if len(plugins.Items) == 0 {
		return &Source{PluginData: string(data), Origin: path, KeyTypes: defaultKeyTypes}, nil
	}
	src = &Source{Origin: path}
	if err := readServerBlock(root, src); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var blocks []*ast.ObjectItem
	var names []string
	for _, p := range plugins.Items {
		obj, ok := p.Val.(*ast.ObjectType)
		if !ok {
			continue
		}
		for _, km := range obj.List.Filter("KeyManager").Items {
			blocks = append(blocks, km)
			if len(km.Keys) > 0 {
				names = append(names, fmt.Sprint(km.Keys[0].Token.Value()))
			}
		}
	}
	var block *ast.ObjectItem
	switch {
	case len(blocks) == 0:
		return nil, fmt.Errorf("%s has a plugins block but no KeyManager in it", path)
	case plugin != "":
		for i, n := range names {
			if n == plugin {
				block = blocks[i]
			}
		}
		if block == nil {
			return nil, fmt.Errorf("%s has no KeyManager %q; it has %s", path, plugin, strings.Join(names, ", "))
		}
	case len(blocks) > 1:
		return nil, fmt.Errorf("%s has several KeyManager blocks (%s); choose one with --plugin", path, strings.Join(names, ", "))
	default:
		block = blocks[0]
	}
	name := "KeyManager"
	if len(block.Keys) > 0 {
		name = fmt.Sprintf("KeyManager %q", block.Keys[0].Token.Value())
	}
	src.Origin = fmt.Sprintf("%s (%s)", path, name)
	body, ok := block.Val.(*ast.ObjectType)
	if !ok {
		return nil, fmt.Errorf("%s: %s is not a block", path, name)
	}
	if pd := body.List.Filter("plugin_data"); len(pd.Items) > 0 {
		obj, ok := pd.Items[0].Val.(*ast.ObjectType)
		if !ok {
			return nil, fmt.Errorf("%s: plugin_data of %s is not a block", path, name)
		}
		var buf bytes.Buffer
		if err := printer.Fprint(&buf, obj.List); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		src.PluginData = buf.String()
		return src, nil
	}
	if pf := body.List.Filter("plugin_data_file"); len(pf.Items) > 0 {
		// Filter strips the matched key: the item's value is the path.
		lit, ok := pf.Items[0].Val.(*ast.LiteralType)
		p, isString := "", false
		if ok {
			p, isString = lit.Token.Value().(string)
		}
		if !isString || p == "" {
			return nil, fmt.Errorf("%s: plugin_data_file of %s must be a path string", path, name)
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: reading plugin_data_file: %w", path, err)
		}
		src.PluginData = string(data)
		return src, nil
	}
	return nil, fmt.Errorf("%s: %s has neither plugin_data nor plugin_data_file", path, name)
}

// serverConfKeys are the server.conf keys a syntax error may name, besides
// those of plugin_data bodies: the ones ReadSource reads.
func serverConfKeys() []string {
	return []string{"server", "trust_domain", "ca_key_type", "jwt_key_type", "plugins", "KeyManager", "plugin_cmd", "plugin_data", "plugin_data_file"}
}

// defaultKeyTypes are SPIRE's defaults for ca_key_type and jwt_key_type.
var defaultKeyTypes = []string{"ec-p256"}

// readServerBlock reads trust_domain, ca_key_type and jwt_key_type.
func readServerBlock(root *ast.ObjectList, src *Source) error {
	srv := root.Filter("server")
	if len(srv.Items) == 0 {
		src.KeyTypes = defaultKeyTypes
		return nil
	}
	var s struct {
		TrustDomain string `hcl:"trust_domain"`
		CAKeyType   string `hcl:"ca_key_type"`
		JWTKeyType  string `hcl:"jwt_key_type"`
	}
	obj, ok := srv.Items[0].Val.(*ast.ObjectType)
	if !ok {
		return errors.New("server is not a block")
	}
	if err := config.Decode(&s, obj.List); err != nil {
		return fmt.Errorf("server block: %w", err)
	}
	src.TrustDomain = s.TrustDomain
	ca := s.CAKeyType
	if ca == "" {
		ca = "ec-p256"
	}
	jwt := s.JWTKeyType
	if jwt == "" {
		jwt = ca // SPIRE uses the CA key type for JWT keys unless set
	}
	src.KeyTypes = []string{ca}
	if jwt != ca {
		src.KeyTypes = append(src.KeyTypes, jwt)
	}
	return nil
}
