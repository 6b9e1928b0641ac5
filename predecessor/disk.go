// Package predecessor reads the key manager a trust domain used before
// kmskeeper (its predecessor, named by migrate_from), read-only, so that a
// switch needs no CA rotation: the keys file of SPIRE's disk key manager,
// or another kmskeeper backend (another cloud).
package predecessor

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// diskFile is the JSON SPIRE's disk KeyManager writes: key IDs mapped to
// PKCS#8 DER private keys (base64 in JSON).
type diskFile struct {
	Keys map[string][]byte `json:"keys"`
}

// Disk serves the keys of SPIRE's disk key manager file. The file is read
// once, at ReadDisk, and never written.
type Disk struct {
	path string
	gens []engine.Generation
	keys map[string]crypto.Signer
}

var _ engine.Predecessor = (*Disk)(nil)

// ReadDisk reads and checks the keys file at path. Every key must parse and
// be of a type SPIRE's protocol has, or nothing is served: a migration is
// never half done.
func ReadDisk(path string) (*Disk, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("migrate_from: reading disk_keys_path %s: %w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("migrate_from: disk_keys_path %s: %w", path, err)
	}
	var f diskFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("migrate_from: disk_keys_path %s is not a SPIRE disk key manager file (JSON {\"keys\": {\"<id>\": \"<base64 PKCS#8>\"}}): %w", path, err)
	}
	if f.Keys == nil {
		return nil, fmt.Errorf("migrate_from: disk_keys_path %s has no \"keys\" object", path)
	}
	d := &Disk{path: path, keys: make(map[string]crypto.Signer)}
	ids := make([]string, 0, len(f.Keys))
	for id := range f.Keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k, err := x509.ParsePKCS8PrivateKey(f.Keys[id])
		if err != nil {
			return nil, fmt.Errorf("migrate_from: key %s in %s is not a PKCS#8 private key: %w", id, path, err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("migrate_from: key %s in %s is a %T, which cannot sign", id, path, k)
		}
		t, err := engine.KeyTypeOf(signer.Public())
		if err != nil {
			return nil, fmt.Errorf("migrate_from: key %s in %s: %w (SPIRE keys are EC P-256/P-384 or RSA 2048/4096)", id, path, err)
		}
		d.keys[id] = signer
		// The file's modification time is no earlier than its newest key:
		// a backend key made after it was made by the migration.
		d.gens = append(d.gens, engine.Generation{
			KeyID: id, Ref: "disk:" + path + "#" + id, Type: t, Public: signer.Public(),
			Created: st.ModTime(), Updated: st.ModTime(),
		})
	}
	return d, nil
}

// Name implements engine.Predecessor.
func (d *Disk) Name() string { return "the disk key manager file " + d.path }

// IDs returns the key IDs in the file, sorted.
func (d *Disk) IDs() []string {
	var ids []string
	for _, g := range d.gens {
		ids = append(ids, g.KeyID)
	}
	return ids
}

// Keys implements engine.Predecessor.
func (d *Disk) Keys(context.Context) ([]engine.Generation, error) {
	return slices.Clone(d.gens), nil
}

// Sign implements engine.Predecessor.
func (d *Disk) Sign(_ context.Context, g engine.Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	k := d.keys[g.KeyID]
	if k == nil {
		return nil, engine.Errorf(codes.NotFound, "key %s is not in %s", g.KeyID, d.path)
	}
	return k.Sign(rand.Reader, digest, opts)
}
