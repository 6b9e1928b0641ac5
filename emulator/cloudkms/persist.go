package cloudkms

import (
	"cmp"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/protobuf/encoding/protojson"
)

// stateFile holds the emulator state in DataDir. It is rewritten (atomically)
// after every change: the emulator's state is small and this keeps a crash
// from losing or tearing it.
const stateFile = "state.json"

type stateJSON struct {
	Seq         int64                      `json:"seq"`
	ClockOffset time.Duration              `json:"clock_offset_ns"`
	PolicyRev   uint64                     `json:"policy_rev"`
	KeyRings    []ringJSON                 `json:"key_rings"`
	CryptoKeys  []keyJSON                  `json:"crypto_keys"`
	Policies    map[string]json.RawMessage `json:"policies,omitempty"`
}

type ringJSON struct {
	Name       string    `json:"name"`
	Seq        int64     `json:"seq"`
	CreateTime time.Time `json:"create_time"`
}

type keyJSON struct {
	Name            string            `json:"name"`
	Seq             int64             `json:"seq"`
	CreateTime      time.Time         `json:"create_time"`
	Purpose         string            `json:"purpose"`
	Algorithm       string            `json:"algorithm"`
	Protection      string            `json:"protection_level"`
	Labels          map[string]string `json:"labels,omitempty"`
	DestroyDuration time.Duration     `json:"destroy_scheduled_duration_ns"`
	ImportOnly      bool              `json:"import_only,omitempty"`
	Versions        []versionJSON     `json:"versions,omitempty"`
}

type versionJSON struct {
	Seq              int64     `json:"seq"`
	State            string    `json:"state"`
	Algorithm        string    `json:"algorithm"`
	Protection       string    `json:"protection_level"`
	CreateTime       time.Time `json:"create_time"`
	ReadyTime        time.Time `json:"ready_time"`
	GenerateTime     time.Time `json:"generate_time,omitzero"`
	DestroyTime      time.Time `json:"destroy_time,omitzero"`
	DestroyEventTime time.Time `json:"destroy_event_time,omitzero"`
	PKCS8            []byte    `json:"pkcs8,omitempty"`
}

// persistLocked writes the state to DataDir (no-op without one). Errors are
// logged: a failed write must not fail the request that changed the state.
// Callers hold st.mu.
func (s *Server) persistLocked() {
	if s.opts.DataDir == "" {
		return
	}
	if err := s.saveLocked(); err != nil {
		s.logf("gcpkms: save state: %v", err)
	}
}

func (s *Server) saveLocked() error {
	st := s.st
	out := stateJSON{Seq: st.seq, ClockOffset: s.clock.Offset(), PolicyRev: st.policyRev, Policies: map[string]json.RawMessage{}}
	rings := make([]*keyRing, 0, len(st.rings))
	for _, r := range st.rings {
		rings = append(rings, r)
	}
	slices.SortFunc(rings, func(a, b *keyRing) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range rings {
		out.KeyRings = append(out.KeyRings, ringJSON{Name: r.name, Seq: r.seq, CreateTime: r.createTime})
		for _, k := range r.keys {
			kj := keyJSON{Name: k.name, Seq: k.seq, CreateTime: k.createTime, Purpose: k.purpose.String(),
				Algorithm: k.algorithm.String(), Protection: k.protection.String(), Labels: k.labels,
				DestroyDuration: k.destroyDuration, ImportOnly: k.importOnly}
			for _, v := range k.versions {
				vj := versionJSON{Seq: v.seq, State: v.state.String(), Algorithm: v.algorithm.String(),
					Protection: v.protection.String(), CreateTime: v.createTime, ReadyTime: v.readyTime,
					GenerateTime: v.generateTime, DestroyTime: v.destroyTime, DestroyEventTime: v.destroyEventTime}
				if v.signer != nil {
					der, err := x509.MarshalPKCS8PrivateKey(v.signer)
					if err != nil {
						return fmt.Errorf("marshal key of %s: %w", v.name, err)
					}
					vj.PKCS8 = der
				}
				kj.Versions = append(kj.Versions, vj)
			}
			out.CryptoKeys = append(out.CryptoKeys, kj)
		}
	}
	for name, p := range st.policies {
		b, err := protojson.Marshal(p)
		if err != nil {
			return fmt.Errorf("marshal policy of %s: %w", name, err)
		}
		out.Policies[name] = b
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.opts.DataDir, stateFile), b)
}

// load reads the state from DataDir, if there is one.
func (s *Server) load() error {
	if s.opts.DataDir == "" {
		return nil
	}
	if err := os.MkdirAll(s.opts.DataDir, 0o700); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(s.opts.DataDir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var in stateJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("%s: %w", stateFile, err)
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.seq, st.policyRev = in.Seq, in.PolicyRev
	s.clock.Advance(in.ClockOffset - s.clock.Offset())
	for _, r := range in.KeyRings {
		st.rings[r.Name] = &keyRing{name: r.Name, seq: r.Seq, createTime: r.CreateTime}
	}
	for _, kj := range in.CryptoKeys {
		ring, ok := st.rings[parentOf(kj.Name, "/cryptoKeys/")]
		if !ok {
			return fmt.Errorf("%s: key %s has no key ring", stateFile, kj.Name)
		}
		k := &cryptoKey{name: kj.Name, seq: kj.Seq, createTime: kj.CreateTime,
			purpose:    kmspb.CryptoKey_CryptoKeyPurpose(kmspb.CryptoKey_CryptoKeyPurpose_value[kj.Purpose]),
			algorithm:  algByName(kj.Algorithm),
			protection: kmspb.ProtectionLevel(kmspb.ProtectionLevel_value[kj.Protection]),
			labels:     kj.Labels, destroyDuration: kj.DestroyDuration, importOnly: kj.ImportOnly}
		if k.labels == nil {
			k.labels = map[string]string{}
		}
		for i, vj := range kj.Versions {
			v := &keyVersion{name: versionName(k.name, i+1), number: i + 1, seq: vj.Seq,
				state:      kmspb.CryptoKeyVersion_CryptoKeyVersionState(kmspb.CryptoKeyVersion_CryptoKeyVersionState_value[vj.State]),
				algorithm:  algByName(vj.Algorithm),
				protection: kmspb.ProtectionLevel(kmspb.ProtectionLevel_value[vj.Protection]),
				createTime: vj.CreateTime, readyTime: vj.ReadyTime, generateTime: vj.GenerateTime,
				destroyTime: vj.DestroyTime, destroyEventTime: vj.DestroyEventTime}
			if len(vj.PKCS8) > 0 {
				key, err := x509.ParsePKCS8PrivateKey(vj.PKCS8)
				if err != nil {
					return fmt.Errorf("%s: key of %s: %w", stateFile, v.name, err)
				}
				signer, ok := key.(crypto.Signer)
				if !ok {
					return fmt.Errorf("%s: key of %s is not a signer", stateFile, v.name)
				}
				v.signer = signer
			}
			k.versions = append(k.versions, v)
		}
		st.keys[k.name] = k
		ring.keys = append(ring.keys, k)
	}
	for name, raw := range in.Policies {
		p := &iampb.Policy{}
		if err := protojson.Unmarshal(raw, p); err != nil {
			return fmt.Errorf("%s: policy of %s: %w", stateFile, name, err)
		}
		st.policies[name] = p
	}
	return nil
}

func algByName(s string) kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm {
	return kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm(kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm_value[s])
}

// writeFileAtomic writes b to path via a temporary file and a rename, with
// mode 0600 (the files hold private keys).
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
