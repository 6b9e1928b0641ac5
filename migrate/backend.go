package migrate

import (
	"context"
	"crypto"
	"sort"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// Backend serves, read-only, the keys one server holds in another backend
// (another cloud): the newest generation of each of its key IDs. It never
// creates, keeps alive or retires anything there; the operator retires the
// old cloud's keys with `kmskeeper gc` once the migration is complete.
type Backend struct {
	name     string
	b        keymanager.Backend
	serverID string
}

var _ keymanager.Predecessor = (*Backend)(nil)

// FromBackend returns the read-only view of serverID's keys in b. name
// describes b in logs ("azure_key_vault https://old.vault.azure.net/").
func FromBackend(name string, b keymanager.Backend, serverID string) *Backend {
	return &Backend{name: name, b: b, serverID: serverID}
}

// Name implements keymanager.Predecessor.
func (m *Backend) Name() string { return m.name }

// Keys implements keymanager.Predecessor.
func (m *Backend) Keys(ctx context.Context) ([]keymanager.Generation, error) {
	gens, err := m.b.ListGenerations(ctx)
	if err != nil {
		return nil, err
	}
	newest := make(map[string]keymanager.Generation)
	for _, g := range gens {
		if g.ServerID != m.serverID {
			continue
		}
		if cur, ok := newest[g.KeyID]; !ok || g.Created.After(cur.Created) || (g.Created.Equal(cur.Created) && g.Ref > cur.Ref) {
			newest[g.KeyID] = g
		}
	}
	out := make([]keymanager.Generation, 0, len(newest))
	for _, g := range newest {
		if g.Public == nil {
			f, err := m.b.Fetch(ctx, g)
			if err != nil {
				return nil, err
			}
			g = f
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KeyID < out[j].KeyID })
	return out, nil
}

// Sign implements keymanager.Predecessor.
func (m *Backend) Sign(ctx context.Context, g keymanager.Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return m.b.Sign(ctx, g, digest, opts)
}

// Close closes the old backend's clients.
func (m *Backend) Close() error {
	if c, ok := m.b.(keymanager.Closer); ok {
		return c.Close()
	}
	return nil
}
