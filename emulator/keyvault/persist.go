package keyvault

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the name of the state file in Options.DataDir.
const stateFile = "azurekv-state.json"

// state is everything --data-dir keeps: keys (with private material), the
// CA (so clients keep trusting it), the token key and the credentials.
type state struct {
	Version        int                    `json:"version"`
	CACert         []byte                 `json:"caCert"`
	CAKey          []byte                 `json:"caKey"`
	TokenKey       []byte                 `json:"tokenKey"`
	ClientSecret   string                 `json:"clientSecret"`
	IdentityHeader string                 `json:"identityHeader"`
	Vaults         map[string]*vaultState `json:"vaults"`
}

type vaultState struct {
	Keys    map[string]*keyObj `json:"keys"`
	Deleted map[string]*keyObj `json:"deleted"`
}

// loadState reads the data directory, if any, and fills the vaults.
func (s *Server) loadState() (*state, error) {
	if s.opts.DataDir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(s.opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(s.opts.DataDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse %s: %w", stateFile, err)
	}
	for name, vs := range st.Vaults {
		v := s.byName[name]
		if v == nil {
			s.logf("data dir: vault %q is no longer configured; its keys are kept on disk only until the next write", name)
			continue
		}
		for _, m := range []map[string]*keyObj{vs.Keys, vs.Deleted} {
			for _, k := range m {
				for _, kv := range k.Versions {
					if err := kv.load(); err != nil {
						return nil, fmt.Errorf("state of vault %s: %w", name, err)
					}
				}
			}
		}
		if vs.Keys != nil {
			v.keys = vs.Keys
		}
		if vs.Deleted != nil {
			v.deleted = vs.Deleted
		}
	}
	return &st, nil
}

// persist writes the whole state atomically (temporary file, fsync,
// rename) when a data directory is configured.
func (s *Server) persist() error {
	if s.opts.DataDir == "" {
		return nil
	}
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	caKey, err := s.ca.KeyPEM()
	if err != nil {
		return err
	}
	tokKey, err := x509.MarshalECPrivateKey(s.token.key)
	if err != nil {
		return fmt.Errorf("marshal token key: %w", err)
	}
	st := state{
		Version: 1, CACert: s.ca.CertPEM, CAKey: caKey, TokenKey: tokKey,
		ClientSecret: s.clientSecret, IdentityHeader: s.identityHeader,
		Vaults: map[string]*vaultState{},
	}
	var b []byte
	func() {
		// Marshal under the vault locks so each vault is consistent.
		for _, v := range s.vaults {
			v.mu.Lock()
			defer v.mu.Unlock()
			st.Vaults[lower(v.name)] = &vaultState{Keys: v.keys, Deleted: v.deleted}
		}
		b, err = json.MarshalIndent(&st, "", " ")
	}()
	if err != nil {
		return fmt.Errorf("marshal state: %w", err)
	}
	return writeFileAtomic(filepath.Join(s.opts.DataDir, stateFile), b, 0o600)
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
