package cloudkms

import (
	"crypto"
	"fmt"
	"maps"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
)

// SeedKey describes a CryptoKey to lay out directly, bypassing the API, so
// tests can reproduce state that takes weeks to reach through the API (keys
// as SPIRE's built-in gcp_kms left them, versions destroyed long ago, ...).
type SeedKey struct {
	// Name is the full CryptoKey name; its key ring is created if missing.
	Name string
	// Algorithm of the version template (and of the versions by default).
	Algorithm kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	// ProtectionLevel defaults to SOFTWARE.
	ProtectionLevel kmspb.ProtectionLevel
	Labels          map[string]string
	// CreateTime defaults to the emulator clock's now.
	CreateTime time.Time
	// DestroyScheduledDuration defaults to 30 days.
	DestroyScheduledDuration time.Duration
	// Versions are created as 1, 2, ... in order.
	Versions []SeedVersion
}

// SeedVersion describes one CryptoKeyVersion of a SeedKey.
type SeedVersion struct {
	// State defaults to ENABLED. PENDING_GENERATION ends at ReadyTime;
	// DESTROY_SCHEDULED becomes DESTROYED at DestroyTime (default CreateTime
	// plus the key's DestroyScheduledDuration); DESTROYED has no key material.
	State       kmspb.CryptoKeyVersion_CryptoKeyVersionState
	CreateTime  time.Time
	ReadyTime   time.Time
	DestroyTime time.Time
	// Key is the key material; nil generates a key for the algorithm.
	Key crypto.Signer
}

// SeedCryptoKey creates k as described and returns it as the API would. It
// fails if the key exists or the description is invalid.
func (s *Server) SeedCryptoKey(k SeedKey) (*kmspb.CryptoKey, error) {
	ring, err := parseCryptoKeyName(k.Name)
	if err != nil {
		return nil, fmt.Errorf("gcpkms: seed %s: %w", k.Name, err)
	}
	if _, ok := algorithms[k.Algorithm]; !ok {
		return nil, fmt.Errorf("gcpkms: seed %s: unsupported algorithm %v", k.Name, k.Algorithm)
	}
	if err := validateLabels(k.Labels); err != nil {
		return nil, fmt.Errorf("gcpkms: seed %s: %w", k.Name, err)
	}
	signers := make([]crypto.Signer, len(k.Versions))
	for i, v := range k.Versions {
		if v.State == kmspb.CryptoKeyVersion_DESTROYED {
			continue
		}
		if v.Key != nil {
			if err := checkKeyMatches(k.Algorithm, v.Key); err != nil {
				return nil, fmt.Errorf("gcpkms: seed %s version %d: %w", k.Name, i+1, err)
			}
			signers[i] = v.Key
			continue
		}
		if signers[i], err = generateKey(k.Algorithm); err != nil {
			return nil, fmt.Errorf("gcpkms: seed %s: %w", k.Name, err)
		}
	}
	now := s.clock.Now()
	pl := k.ProtectionLevel
	if pl == kmspb.ProtectionLevel_PROTECTION_LEVEL_UNSPECIFIED {
		pl = kmspb.ProtectionLevel_SOFTWARE
	}
	dd := k.DestroyScheduledDuration
	if dd == 0 {
		dd = defaultDestroyScheduledDuration
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.keys[k.Name]; ok {
		return nil, fmt.Errorf("gcpkms: seed %s: %w", k.Name, alreadyExists("CryptoKey", k.Name))
	}
	if _, ok := st.rings[ring]; !ok {
		s.addKeyRingLocked(ring)
	}
	key := s.addCryptoKeyLocked(k.Name, &cryptoKey{
		purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN, algorithm: k.Algorithm, protection: pl,
		labels: maps.Clone(k.Labels), destroyDuration: dd,
	})
	if !k.CreateTime.IsZero() {
		key.createTime = k.CreateTime.UTC()
	}
	for i, sv := range k.Versions {
		ct := sv.CreateTime
		if ct.IsZero() {
			ct = key.createTime
		}
		v := &keyVersion{
			name: versionName(key.name, i+1), number: i + 1, seq: st.nextSeq(),
			state: sv.State, algorithm: k.Algorithm, protection: pl,
			createTime: ct.UTC(), readyTime: ct.UTC(), signer: signers[i],
		}
		switch sv.State {
		case kmspb.CryptoKeyVersion_CRYPTO_KEY_VERSION_STATE_UNSPECIFIED:
			v.state = kmspb.CryptoKeyVersion_ENABLED
		case kmspb.CryptoKeyVersion_PENDING_GENERATION:
			v.readyTime = sv.ReadyTime.UTC()
			if sv.ReadyTime.IsZero() {
				v.readyTime = now.Add(s.pendingFor(key))
			}
		case kmspb.CryptoKeyVersion_DESTROY_SCHEDULED, kmspb.CryptoKeyVersion_DESTROYED:
			v.destroyTime = sv.DestroyTime.UTC()
			if sv.DestroyTime.IsZero() {
				v.destroyTime = ct.Add(dd).UTC()
			}
			if sv.State == kmspb.CryptoKeyVersion_DESTROYED {
				v.destroyEventTime = v.destroyTime
			}
		case kmspb.CryptoKeyVersion_ENABLED, kmspb.CryptoKeyVersion_DISABLED:
		default:
			return nil, fmt.Errorf("gcpkms: seed %s version %d: state %v is not supported", k.Name, i+1, sv.State)
		}
		if v.state != kmspb.CryptoKeyVersion_PENDING_GENERATION {
			v.generateTime = v.createTime
		}
		key.versions = append(key.versions, v)
	}
	key.settle(now)
	s.persistLocked()
	return key.proto(), nil
}
