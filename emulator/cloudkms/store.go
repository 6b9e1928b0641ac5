package cloudkms

import (
	"crypto"
	"maps"
	"sync"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// defaultDestroyScheduledDuration is the service's default time a version
// stays DESTROY_SCHEDULED before its key material is gone.
const defaultDestroyScheduledDuration = 30 * 24 * time.Hour

// store holds every resource. One mutex guards it: the emulator favours
// obviously-correct state transitions over parallel throughput, and no lock
// is held while generating RSA keys or signing.
type store struct {
	mu        sync.Mutex
	seq       int64 // creation order of every resource, for default list order and page tokens
	rings     map[string]*keyRing
	keys      map[string]*cryptoKey
	policies  map[string]*iampb.Policy // IAM policies by resource name (key rings and CryptoKeys)
	policyRev uint64
}

func newStore() *store {
	return &store{
		rings:    map[string]*keyRing{},
		keys:     map[string]*cryptoKey{},
		policies: map[string]*iampb.Policy{},
	}
}

// keyRing is a KeyRing resource.
type keyRing struct {
	name       string
	seq        int64
	createTime time.Time
	keys       []*cryptoKey // in creation order
}

// cryptoKey is a CryptoKey resource.
type cryptoKey struct {
	name            string
	seq             int64
	createTime      time.Time
	purpose         kmspb.CryptoKey_CryptoKeyPurpose
	algorithm       kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	protection      kmspb.ProtectionLevel
	labels          map[string]string
	destroyDuration time.Duration
	importOnly      bool
	versions        []*keyVersion // versions[i].number == i+1
}

// keyVersion is a CryptoKeyVersion and its key material.
type keyVersion struct {
	name             string
	number           int
	seq              int64
	state            kmspb.CryptoKeyVersion_CryptoKeyVersionState
	algorithm        kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	protection       kmspb.ProtectionLevel
	createTime       time.Time
	readyTime        time.Time // when PENDING_GENERATION ends
	generateTime     time.Time
	destroyTime      time.Time
	destroyEventTime time.Time
	signer           crypto.Signer // nil once DESTROYED
}

// settle applies the transitions that happen on their own as the clock moves:
// PENDING_GENERATION -> ENABLED at readyTime, DESTROY_SCHEDULED -> DESTROYED
// at destroyTime (the key material is dropped). Callers hold s.mu.
func (v *keyVersion) settle(now time.Time) {
	switch v.state {
	case kmspb.CryptoKeyVersion_PENDING_GENERATION:
		if !now.Before(v.readyTime) {
			v.state = kmspb.CryptoKeyVersion_ENABLED
			v.generateTime = v.readyTime
		}
	case kmspb.CryptoKeyVersion_DESTROY_SCHEDULED:
		if !now.Before(v.destroyTime) {
			v.state = kmspb.CryptoKeyVersion_DESTROYED
			v.destroyEventTime = v.destroyTime
			v.signer = nil
		}
	}
}

// settle brings every version of k up to date.
func (k *cryptoKey) settle(now time.Time) {
	for _, v := range k.versions {
		v.settle(now)
	}
}

func (s *store) nextSeq() int64 { s.seq++; return s.seq }

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func (r *keyRing) proto() *kmspb.KeyRing {
	return &kmspb.KeyRing{Name: r.name, CreateTime: ts(r.createTime)}
}

func (v *keyVersion) proto() *kmspb.CryptoKeyVersion {
	return &kmspb.CryptoKeyVersion{
		Name:             v.name,
		State:            v.state,
		ProtectionLevel:  v.protection,
		Algorithm:        v.algorithm,
		CreateTime:       ts(v.createTime),
		GenerateTime:     ts(v.generateTime),
		DestroyTime:      ts(v.destroyTime),
		DestroyEventTime: ts(v.destroyEventTime),
	}
}

// proto renders k. Primary is only reported for ENCRYPT_DECRYPT keys, as the
// service does: asymmetric keys have no primary version.
func (k *cryptoKey) proto() *kmspb.CryptoKey {
	return &kmspb.CryptoKey{
		Name:       k.name,
		Purpose:    k.purpose,
		CreateTime: ts(k.createTime),
		VersionTemplate: &kmspb.CryptoKeyVersionTemplate{
			ProtectionLevel: k.protection,
			Algorithm:       k.algorithm,
		},
		Labels:                   maps.Clone(k.labels),
		ImportOnly:               k.importOnly,
		DestroyScheduledDuration: durationpb.New(k.destroyDuration),
	}
}

// policy returns a copy of the IAM policy on resource (an empty policy with
// the service's initial etag if none was set).
func (s *store) policy(resource string) *iampb.Policy {
	if p, ok := s.policies[resource]; ok {
		return proto.Clone(p).(*iampb.Policy)
	}
	return &iampb.Policy{Version: 1, Etag: []byte{0, 0, 1}} // "ACAB" in JSON, as the service answers
}
