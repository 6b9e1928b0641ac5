package predecessor

import (
	"context"
	"crypto"
	"sort"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Cloud serves, read-only, the keys one server holds in another backend
// (another cloud): the newest generation of each of its key IDs. It never
// creates, keeps alive or retires anything there; the operator retires the
// old cloud's keys with `kmskeeper gc` once the migration is complete.
type Cloud struct {
	name     string
	b        engine.Backend
	serverID string
}

var _ engine.Predecessor = (*Cloud)(nil)

// FromBackend returns the read-only view of serverID's keys in b. name
// describes b in logs ("azure_key_vault https://old.vault.azure.net/").
func FromBackend(name string, b engine.Backend, serverID string) *Cloud {
	return &Cloud{name: name, b: b, serverID: serverID}
}

// Name implements engine.Predecessor.
func (c *Cloud) Name() string { return c.name }

// Keys implements engine.Predecessor.
func (c *Cloud) Keys(ctx context.Context) ([]engine.Generation, error) {
	gens, err := c.b.ListGenerations(ctx)
	if err != nil {
		return nil, err
	}
	newest := make(map[string]engine.Generation)
	for _, g := range gens {
		if g.ServerID != c.serverID {
			continue
		}
		if cur, ok := newest[g.KeyID]; !ok || g.Created.After(cur.Created) || (g.Created.Equal(cur.Created) && g.Ref > cur.Ref) {
			newest[g.KeyID] = g
		}
	}
	out := make([]engine.Generation, 0, len(newest))
	for _, g := range newest {
		if g.Public == nil {
			f, err := c.b.Fetch(ctx, g)
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

// Sign implements engine.Predecessor.
func (c *Cloud) Sign(ctx context.Context, g engine.Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return c.b.Sign(ctx, g, digest, opts)
}

// Close closes the old backend's clients.
func (c *Cloud) Close() error {
	if cl, ok := c.b.(engine.Closer); ok {
		return cl.Close()
	}
	return nil
}
