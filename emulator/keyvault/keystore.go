package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"
)

// vault is one Key Vault or Managed HSM and its keys.
type vault struct {
	name            string // as configured
	managedHSM      bool
	sku             string
	retentionDays   int
	purgeProtection bool
	listen          string // dedicated listener address, if requested

	throttle throttle

	mu      sync.Mutex
	keys    map[string]*keyObj // lower-case name -> key
	deleted map[string]*keyObj // lower-case name -> soft-deleted key
}

// keyObj is a named key with all its versions.
type keyObj struct {
	Name     string                 `json:"name"`
	Versions map[string]*keyVersion `json:"versions"`
	Latest   string                 `json:"latest"`
	Policy   *rotationPolicy        `json:"rotationPolicy,omitempty"`
	// Set while soft-deleted.
	DeletedDate    int64 `json:"deletedDate,omitempty"`
	ScheduledPurge int64 `json:"scheduledPurgeDate,omitempty"`
	// DeletionDone is when the soft delete completes (Unix milliseconds on
	// the emulator's clock); until then the key is being deleted: neither
	// live nor found as deleted (Options.DeletionDelay).
	DeletionDone int64 `json:"deletionDone,omitempty"`
}

// beingDeleted reports whether a deleted key's soft delete is still in
// progress at now.
func (k *keyObj) beingDeleted(now time.Time) bool {
	return k.DeletionDone != 0 && now.UnixMilli() < k.DeletionDone
}

// keyVersion is one version of a key: its material, attributes and tags.
type keyVersion struct {
	Version    string            `json:"version"`
	Kty        string            `json:"kty"`
	KeyOps     []string          `json:"key_ops"`
	PrivDER    []byte            `json:"pkcs8"`
	Enabled    bool              `json:"enabled"`
	NBF        *int64            `json:"nbf,omitempty"`
	Exp        *int64            `json:"exp,omitempty"`
	Created    int64             `json:"created"`
	Updated    int64             `json:"updated"`
	Exportable bool              `json:"exportable,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`

	priv crypto.Signer
}

// rotationPolicy is a key's rotation policy as stored and returned.
type rotationPolicy struct {
	LifetimeActions json.RawMessage `json:"lifetimeActions,omitempty"`
	ExpiryTime      string          `json:"expiryTime,omitempty"`
	Created         int64           `json:"created,omitempty"`
	Updated         int64           `json:"updated,omitempty"`
}

func newKeyVersion(version, kty string, ops []string, priv crypto.Signer) (*keyVersion, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return &keyVersion{Version: version, Kty: kty, KeyOps: ops, PrivDER: der, Enabled: true, priv: priv}, nil
}

// load restores the parsed key after reading a persisted or backed-up blob.
func (kv *keyVersion) load() error {
	k, err := x509.ParsePKCS8PrivateKey(kv.PrivDER)
	if err != nil {
		return fmt.Errorf("key version %s: %w", kv.Version, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return fmt.Errorf("key version %s: unsupported key %T", kv.Version, k)
	}
	kv.priv = s
	return nil
}

func (kv *keyVersion) isRSA() bool { return strings.HasPrefix(kv.Kty, "RSA") }
func (kv *keyVersion) isHSM() bool { return strings.HasSuffix(kv.Kty, "-HSM") }

// class returns the throttling class of operations on this version.
func (kv *keyVersion) class() keyClass {
	c := keyClass{hsm: kv.isHSM(), rsa: kv.isRSA()}
	if k, ok := kv.priv.(*rsa.PrivateKey); ok {
		c.bits = k.N.BitLen()
	}
	return c
}

func (kv *keyVersion) hasOp(op string) bool {
	return slices.ContainsFunc(kv.KeyOps, func(o string) bool { return strings.EqualFold(o, op) })
}

// --- wire shapes ---

type jsonWebKey struct {
	Kid    string   `json:"kid,omitempty"`
	Kty    string   `json:"kty,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	N      string   `json:"n,omitempty"`
	E      string   `json:"e,omitempty"`
	D      string   `json:"d,omitempty"`
	DP     string   `json:"dp,omitempty"`
	DQ     string   `json:"dq,omitempty"`
	QI     string   `json:"qi,omitempty"`
	P      string   `json:"p,omitempty"`
	Q      string   `json:"q,omitempty"`
	Crv    string   `json:"crv,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
	K      string   `json:"k,omitempty"`
	T      string   `json:"key_hsm,omitempty"`
}

type keyAttributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NBF             *int64 `json:"nbf,omitempty"`
	Exp             *int64 `json:"exp,omitempty"`
	Created         int64  `json:"created,omitempty"`
	Updated         int64  `json:"updated,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	RecoverableDays int    `json:"recoverableDays,omitempty"`
	Exportable      *bool  `json:"exportable,omitempty"`
}

type keyBundle struct {
	Key        jsonWebKey        `json:"key"`
	Attributes keyAttributes     `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	// Deleted bundles only.
	RecoveryID         string `json:"recoveryId,omitempty"`
	DeletedDate        int64  `json:"deletedDate,omitempty"`
	ScheduledPurgeDate int64  `json:"scheduledPurgeDate,omitempty"`
}

type keyItem struct {
	Kid                string            `json:"kid"`
	Attributes         keyAttributes     `json:"attributes"`
	Tags               map[string]string `json:"tags,omitempty"`
	RecoveryID         string            `json:"recoveryId,omitempty"`
	DeletedDate        int64             `json:"deletedDate,omitempty"`
	ScheduledPurgeDate int64             `json:"scheduledPurgeDate,omitempty"`
}

// recoveryLevel is the deletion recovery level the vault's settings imply.
func (v *vault) recoveryLevel() string {
	lvl := "Recoverable"
	if v.retentionDays < 90 {
		lvl = "CustomizedRecoverable"
	}
	if !v.purgeProtection {
		lvl += "+Purgeable"
	}
	return lvl
}

func (v *vault) attrs(kv *keyVersion) keyAttributes {
	enabled := kv.Enabled
	exportable := kv.Exportable
	return keyAttributes{
		Enabled: &enabled, NBF: kv.NBF, Exp: kv.Exp, Created: kv.Created, Updated: kv.Updated,
		RecoveryLevel: v.recoveryLevel(), RecoverableDays: v.retentionDays, Exportable: &exportable,
	}
}

// publicJWK returns the public members of the key, with EC coordinates
// padded to the field width and RSA values without leading zeros.
func publicJWK(kv *keyVersion, kid string) jsonWebKey {
	j := jsonWebKey{Kid: kid, Kty: kv.Kty, KeyOps: slices.Clone(kv.KeyOps)}
	if j.KeyOps == nil {
		j.KeyOps = []string{}
	}
	switch k := kv.priv.(type) {
	case *rsa.PrivateKey:
		j.N = b64(k.N.Bytes())
		j.E = b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		raw, err := k.PublicKey.Bytes()
		if err == nil {
			size := (len(raw) - 1) / 2
			j.Crv = jwkCurve(k.Curve)
			j.X = b64(raw[1 : 1+size])
			j.Y = b64(raw[1+size:])
		}
	}
	return j
}

func kidOf(base, name, version string) string {
	return base + "/keys/" + name + "/" + version
}

func (v *vault) bundle(base string, k *keyObj, kv *keyVersion) keyBundle {
	b := keyBundle{
		Key:        publicJWK(kv, kidOf(base, k.Name, kv.Version)),
		Attributes: v.attrs(kv),
		Tags:       kv.Tags,
	}
	if k.DeletedDate != 0 {
		b.RecoveryID = base + "/deletedkeys/" + k.Name
		b.DeletedDate = k.DeletedDate
		b.ScheduledPurgeDate = k.ScheduledPurge
	}
	return b
}

func (v *vault) item(base string, k *keyObj, kv *keyVersion, versioned bool) keyItem {
	kid := base + "/keys/" + k.Name
	if versioned {
		kid += "/" + kv.Version
	}
	it := keyItem{Kid: kid, Attributes: v.attrs(kv), Tags: kv.Tags}
	if k.DeletedDate != 0 {
		it.RecoveryID = base + "/deletedkeys/" + k.Name
		it.DeletedDate = k.DeletedDate
		it.ScheduledPurgeDate = k.ScheduledPurge
	}
	return it
}

// purgeExpired drops soft-deleted keys whose scheduled purge date has
// passed, as the service does on its own. Callers hold v.mu.
func (v *vault) purgeExpired(now time.Time) bool {
	changed := false
	for n, k := range v.deleted {
		if k.ScheduledPurge != 0 && now.Unix() >= k.ScheduledPurge {
			delete(v.deleted, n)
			changed = true
		}
	}
	return changed
}
