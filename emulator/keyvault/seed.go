package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"
)

// peekKeyType reads kty and the RSA size of a create or import body, for
// throttling classes.
func peekKeyType(body []byte) (string, int) {
	var p struct {
		Kty     string      `json:"kty"`
		KeySize int         `json:"key_size"`
		Key     *jsonWebKey `json:"key"`
		HSM     bool        `json:"Hsm"`
	}
	_ = json.Unmarshal(body, &p)
	if p.Key != nil {
		kty := p.Key.Kty
		if p.HSM && !strings.HasSuffix(kty, "-HSM") {
			kty += "-HSM"
		}
		bits := 0
		if b, err := unb64(p.Key.N); err == nil {
			bits = len(b) * 8
		}
		return kty, bits
	}
	if p.KeySize == 0 {
		p.KeySize = 2048
	}
	return p.Kty, p.KeySize
}

// SeedKey describes a key version that a test puts straight into a vault,
// for example to imitate keys another tool (SPIRE's built-in plugin)
// created earlier, with its tags and dates.
type SeedKey struct {
	Name string
	// Signer is the key material: *rsa.PrivateKey or *ecdsa.PrivateKey on
	// P-256, P-384 or P-521.
	Signer crypto.Signer
	// HSM makes it an RSA-HSM/EC-HSM key (always so on a Managed HSM).
	HSM    bool
	KeyOps []string // default: the service's defaults for the key type
	Tags   map[string]string
	// Disabled creates the version disabled.
	Disabled bool
	// NotBefore and Expires set nbf/exp when non-zero.
	NotBefore, Expires time.Time
	// Created and Updated default to the emulator clock.
	Created, Updated time.Time
}

// SeedKey adds a new version of a key to a vault or Managed HSM, bypassing
// the API (no auth, counters, faults or throttling), and returns its kid
// relative to VaultURL(vault). Seeding refuses a soft-deleted name like
// CreateKey does.
func (s *Server) SeedKey(vaultName string, k SeedKey) (string, error) {
	v := s.byName[lower(vaultName)]
	if v == nil {
		return "", fmt.Errorf("seed key: unknown vault %q", vaultName)
	}
	if err := checkName(k.Name); err != nil {
		return "", fmt.Errorf("seed key: %w", err)
	}
	var kty string
	switch key := k.Signer.(type) {
	case *rsa.PrivateKey:
		kty = "RSA"
	case *ecdsa.PrivateKey:
		if _, ok := curves[jwkCurve(key.Curve)]; !ok {
			return "", fmt.Errorf("seed key: unsupported curve")
		}
		kty = "EC"
	default:
		return "", fmt.Errorf("seed key: unsupported key type %T", k.Signer)
	}
	kty, aerr := v.normKty(kty, k.HSM)
	if aerr != nil {
		return "", fmt.Errorf("seed key: %w", aerr)
	}
	ops := defaultKeyOps(kty[:2] == "RS")
	if k.KeyOps != nil {
		if ops, aerr = normKeyOps(k.KeyOps, kty[:2] == "RS"); aerr != nil {
			return "", fmt.Errorf("seed key: %w", aerr)
		}
	}
	kv, err := newKeyVersion(newVersionID(), kty, ops, k.Signer)
	if err != nil {
		return "", fmt.Errorf("seed key: %w", err)
	}
	kv.Enabled = !k.Disabled
	kv.Tags = maps.Clone(k.Tags)
	if !k.NotBefore.IsZero() {
		t := k.NotBefore.Unix()
		kv.NBF = &t
	}
	if !k.Expires.IsZero() {
		t := k.Expires.Unix()
		kv.Exp = &t
	}
	if !k.Created.IsZero() {
		kv.Created = k.Created.Unix()
	}
	if !k.Updated.IsZero() {
		kv.Updated = k.Updated.Unix()
	} else if kv.Created != 0 {
		kv.Updated = kv.Created
	}
	base := strings.TrimSuffix(s.VaultURL(v.name), "/")
	c := &call{v: v, base: base, now: s.clock.Now()}
	b, aerr := v.addVersion(c, k.Name, kv)
	if aerr != nil {
		return "", fmt.Errorf("seed key: %w", aerr)
	}
	if err := s.persist(); err != nil {
		return "", err
	}
	return b.Key.Kid, nil
}

// SetKeyAttributes changes a stored version's tags and dates directly (for
// adoption tests); version "" is the latest. A nil tags map keeps the tags;
// zero times keep the dates.
func (s *Server) SetKeyAttributes(vaultName, name, version string, tags map[string]string, created, updated time.Time) error {
	v := s.byName[lower(vaultName)]
	if v == nil {
		return fmt.Errorf("set key attributes: unknown vault %q", vaultName)
	}
	v.mu.Lock()
	_, kv, aerr := v.lookup(s.clock.Now(), name, version)
	if aerr == nil {
		if tags != nil {
			kv.Tags = maps.Clone(tags)
		}
		if !created.IsZero() {
			kv.Created = created.Unix()
		}
		if !updated.IsZero() {
			kv.Updated = updated.Unix()
		}
	}
	v.mu.Unlock()
	if aerr != nil {
		return fmt.Errorf("set key attributes: %w", aerr)
	}
	return s.persist()
}

// KeyNames lists the live key names of a vault, sorted (for assertions).
func (s *Server) KeyNames(vaultName string) []string {
	v := s.byName[lower(vaultName)]
	if v == nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, k := range sortedKeys(v.keys) {
		out = append(out, k.Name)
	}
	return out
}

// DeletedKeyNames lists the soft-deleted key names of a vault, sorted.
func (s *Server) DeletedKeyNames(vaultName string) []string {
	v := s.byName[lower(vaultName)]
	if v == nil {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.purgeExpired(s.clock.Now())
	var out []string
	for _, k := range sortedKeys(v.deleted) {
		out = append(out, k.Name)
	}
	return out
}
