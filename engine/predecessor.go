package engine

import (
	"context"
	"crypto"
	"time"

	"google.golang.org/grpc/codes"
)

// Predecessor is where a trust domain's keys lived before kmskeeper: SPIRE's
// disk key manager file, or another cloud. Its keys are served read-only,
// with the same public keys, so SPIRE's journal still matches and nothing
// rotates; each key ID moves to the backend when SPIRE next calls GenerateKey
// for it. A predecessor is never written to and its keys are never retired.
type Predecessor interface {
	// Name says where the keys come from, for logs and errors.
	Name() string
	// Keys returns the predecessor's keys, one generation per key ID, with
	// Public set. Created is when the key was made (or, when unknown, a
	// time no later than that), to tell a key migrated to the backend from
	// one that was there before the migration.
	Keys(ctx context.Context) ([]Generation, error)
	// Sign signs with one of the generations Keys returned.
	Sign(ctx context.Context, g Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

// loadPredecessor adds the predecessor's keys for the IDs the backend does
// not serve. An ID the backend holds a generation of that is older than the
// predecessor's key existed in the backend before the migration: the
// operator must decide which key SPIRE's journal names, so it is an error.
// served are the backend generations Load is about to serve; the entries
// returned serve the other IDs from the predecessor. The caller holds no lock.
func (m *Manager) loadPredecessor(ctx context.Context, served []Generation) (map[string]*entry, error) {
	p := m.predecessor
	keys, err := p.Keys(ctx)
	if err != nil {
		return nil, wrap(err, "predecessor: reading the keys of %s", p.Name())
	}
	byID := make(map[string]Generation, len(served))
	for _, g := range served {
		byID[g.KeyID] = g
	}
	entries := make(map[string]*entry)
	for _, g := range keys {
		if cur, ok := byID[g.KeyID]; ok {
			if migratedAfter(cur, g) {
				m.log.Info("Key already migrated; the predecessor's key for it is no longer used", "key_id", g.KeyID, "from", p.Name(), "ref", cur.Ref)
				continue
			}
			return nil, Errorf(codes.FailedPrecondition,
				"predecessor: key %s exists both in %s and in the backend (%s), and the backend's key is older: it was there before the migration started. Remove one of them (the one SPIRE's journal does not name) and start again",
				g.KeyID, p.Name(), cur.Ref)
		}
		if g.Public == nil {
			return nil, Errorf(codes.Internal, "predecessor: %s returned key %s without a public key", p.Name(), g.KeyID)
		}
		e, err := m.newEntry(ctx, nil, g)
		if err != nil {
			return nil, wrap(err, "predecessor: key %s from %s", g.KeyID, p.Name())
		}
		e.fromPredecessor = true
		entries[g.KeyID] = e
	}
	return entries, nil
}

// migratedAfter reports whether the backend's generation b was made after
// the predecessor's key p, that is by the migration. Times are compared to
// the second: Key Vault keeps creation times in whole seconds, so a key the
// migration made in the same second as the predecessor's time (a disk file's
// modification time) would otherwise look older than it and stop every
// restart that still has migrate_from.
func migratedAfter(b, p Generation) bool {
	return !b.Created.Truncate(time.Second).Before(p.Created.Truncate(time.Second))
}

// migrationLeft returns how many key IDs are still served by the
// predecessor. The caller holds m.mu.
func (m *Manager) migrationLeft() int {
	n := 0
	for _, e := range m.entries {
		if e.fromPredecessor {
			n++
		}
	}
	return n
}

// noteMigrationProgress logs once that the migration is complete when the
// last key from the predecessor has been replaced. The caller holds m.mu.
func (m *Manager) noteMigrationProgress(replaced *entry) {
	if m.predecessor == nil || replaced == nil || !replaced.fromPredecessor {
		return
	}
	left := m.migrationLeft()
	m.log.Info("Key moved from the predecessor to the backend", "key_id", replaced.gen.KeyID, "from", m.predecessor.Name(), "keys_left", left)
	if left == 0 && !m.migrationDone {
		m.migrationDone = true
		m.log.Info("Migration complete: every key is now served by the backend. Remove migrate_from from plugin_data; the old keys are no longer needed by this server", "from", m.predecessor.Name())
	}
}

// MigrationPending returns the key IDs still served by the predecessor.
func (m *Manager) MigrationPending() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var ids []string
	for id, e := range m.entries {
		if e.fromPredecessor {
			ids = append(ids, id)
		}
	}
	return ids
}
