package config

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/hcl/ast"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/predecessor"
)

const migrateKey = "migrate_from"

// Predecessor says where this server's keys lived before: SPIRE's disk key
// manager file, or another backend's configuration block. Its keys are served
// read-only until SPIRE replaces each key ID (engine.Predecessor).
type Predecessor struct {
	// DiskKeysPath is the keys file of SPIRE's disk KeyManager.
	DiskKeysPath string `hcl:"disk_keys_path"`
	// From is the previous backend's configuration, when migrating between
	// clouds.
	From *Config
}

// parsePredecessor decodes and checks a migrate_from block, returning every
// problem found (each saying it is migrate_from's).
func parsePredecessor(item *ast.ObjectItem, trustDomain string, kinds []Kind) (*Predecessor, error) {
	obj, ok := item.Val.(*ast.ObjectType)
	if !ok || len(item.Keys) != 1 {
		return nil, errors.New(`migrate_from must be a block: migrate_from { disk_keys_path = "..." } or migrate_from { <the previous backend's keys> }`)
	}
	var problems Problems
	keys, err := topLevelKeys(obj.List)
	problems.addf(migrateKey, err)
	if slices.Contains(keys, "disk_keys_path") {
		if len(keys) != 1 {
			problems.add(fmt.Errorf("migrate_from: disk_keys_path stands alone; remove %s", strings.Join(slices.DeleteFunc(keys, func(k string) bool { return k == "disk_keys_path" }), ", ")))
		}
		var m Predecessor
		if err := decode(&m, obj.List); err != nil {
			problems.addf(migrateKey, err)
		} else if m.DiskKeysPath == "" {
			problems.add(errors.New("migrate_from: disk_keys_path is empty"))
		}
		if err := problems.err(); err != nil {
			return nil, err
		}
		return &m, nil
	}
	from, err := parseList(obj.List, trustDomain, kinds, false)
	problems.addf(migrateKey, err)
	if err := problems.err(); err != nil {
		return nil, err
	}
	return &Predecessor{From: from}, nil
}

// String names the predecessor as the operator wrote it, so that a change
// of migrate_from can be told apart from an unchanged block: "" for none.
func (p *Predecessor) String() string {
	switch {
	case p == nil:
		return ""
	case p.DiskKeysPath != "":
		return "disk_keys_path " + p.DiskKeysPath
	}
	id := "key_identifier_value " + p.From.Common.KeyIdentifierValue
	if p.From.Common.KeyIdentifierValue == "" {
		id = "key_identifier_file " + p.From.Common.KeyIdentifierFile
	}
	return p.From.Kind.Name + " " + p.From.Backend.Fixed() + " (" + id + ")"
}

// OpenPredecessor opens the predecessor (migrate_from), if any: it reads and
// checks the disk keys file, or opens the previous backend read-only. It returns nil
// when plugin_data has no migrate_from.
func (c *Config) OpenPredecessor(ctx context.Context, p OpenParams) (engine.Predecessor, error) {
	m := c.Predecessor
	switch {
	case m == nil:
		return nil, nil
	case m.DiskKeysPath != "":
		return predecessor.ReadDisk(m.DiskKeysPath)
	}
	serverID, err := m.From.ServerID(false)
	if err != nil {
		return nil, fmt.Errorf("migrate_from: %w", err)
	}
	if serverID == "" {
		return nil, fmt.Errorf("migrate_from: key_identifier_file %s does not exist: point it at the previous server's identifier file, or set key_identifier_value to the previous server ID", m.From.Common.KeyIdentifierFile)
	}
	p.ServerID = serverID
	b, err := m.From.Backend.Open(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("migrate_from: opening %s: %w", m.From.Kind.Name, err)
	}
	return predecessor.FromBackend(m.From.Kind.Name+" "+m.From.Backend.Fixed(), b, serverID), nil
}
