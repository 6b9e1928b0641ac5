package keyvault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// keyNameRE is the service's pattern for key names (1-127 characters).
var keyNameRE = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

// Service limits on tags.
const (
	maxTags       = 15
	maxTagNameLen = 256
	maxTagValLen  = 256
)

// allKeyOps are the JSON Web Key operations the service knows.
var allKeyOps = []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey", "import", "export"}

type inAttributes struct {
	Enabled    *bool  `json:"enabled"`
	NBF        *int64 `json:"nbf"`
	Exp        *int64 `json:"exp"`
	Exportable *bool  `json:"exportable"`
}

type createParams struct {
	Kty            string            `json:"kty"`
	KeySize        *int              `json:"key_size"`
	PublicExponent *int              `json:"public_exponent"`
	Crv            string            `json:"crv"`
	KeyOps         []string          `json:"key_ops"`
	Attributes     *inAttributes     `json:"attributes"`
	Tags           map[string]string `json:"tags"`
	ReleasePolicy  json.RawMessage   `json:"release_policy"`
}

type updateParams struct {
	KeyOps     []string          `json:"key_ops"`
	Attributes *inAttributes     `json:"attributes"`
	Tags       map[string]string `json:"tags"`
}

// dispatch runs the operation of an authenticated request. It returns the
// status and body, whether the store changed, or the service error.
func (s *Server) dispatch(c *call) (int, any, bool, *apiError) {
	switch c.rt.op {
	case "CreateKey":
		return s.createKey(c)
	case "ImportKey":
		return s.importKey(c)
	case "GetKey":
		return s.getKey(c)
	case "UpdateKey":
		return s.updateKey(c)
	case "DeleteKey":
		return s.deleteKey(c)
	case "ListKeys", "ListKeyVersions", "ListDeletedKeys":
		out, err := s.list(c)
		return http.StatusOK, out, false, err
	case "GetDeletedKey":
		return s.getDeletedKey(c)
	case "PurgeDeletedKey":
		return s.purgeDeletedKey(c)
	case "RecoverDeletedKey":
		return s.recoverDeletedKey(c)
	case "Sign", "Verify", "Encrypt", "Decrypt", "WrapKey", "UnwrapKey":
		out, err := s.keyOperation(c)
		return http.StatusOK, out, false, err
	case "RotateKey":
		return s.rotateKey(c)
	case "GetKeyRotationPolicy", "UpdateKeyRotationPolicy":
		return s.rotationPolicy(c)
	case "BackupKey":
		return s.backupKey(c)
	case "RestoreKey":
		return s.restoreKey(c)
	case "GetRandomBytes":
		return s.randomBytes(c)
	case "Release", "GetKeyAttestation":
		return 0, nil, false, badParam("%s is not supported by this emulator.", c.rt.op)
	}
	return 0, nil, false, badParam("Unknown operation.")
}

func decode(body []byte, v any) *apiError {
	if len(body) == 0 {
		return badParam("The request body is missing.")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badParam("The request body is not valid JSON for this operation: %v", err)
	}
	return nil
}

func newVersionID() string { return strings.ReplaceAll(uuid.NewString(), "-", "") }

func checkName(name string) *apiError {
	if !keyNameRE.MatchString(name) {
		return badParam("The request URI contains an invalid name: %s", name)
	}
	return nil
}

func checkTags(tags map[string]string) *apiError {
	if len(tags) > maxTags {
		return badParam("Too many tags: %d. A key can have at most %d tags.", len(tags), maxTags)
	}
	for k, v := range tags {
		if k == "" || utf8.RuneCountInString(k) > maxTagNameLen {
			return badParam("Invalid tag name %q: tag names must be 1 to %d characters.", k, maxTagNameLen)
		}
		if utf8.RuneCountInString(v) > maxTagValLen {
			return badParam("Invalid value for tag %q: tag values can be at most %d characters.", k, maxTagValLen)
		}
	}
	return nil
}

// normKeyOps validates key_ops against the key type and returns them in the
// service's spelling.
func normKeyOps(ops []string, rsaKey bool) ([]string, *apiError) {
	out := make([]string, 0, len(ops))
	for _, op := range ops {
		i := slices.IndexFunc(allKeyOps, func(o string) bool { return strings.EqualFold(o, op) })
		if i < 0 {
			return nil, badParam("Invalid key operation %q.", op)
		}
		canon := allKeyOps[i]
		if !rsaKey && canon != "sign" && canon != "verify" && canon != "import" && canon != "export" {
			return nil, badParam("Key operation %s is not supported by EC keys.", canon)
		}
		if !slices.Contains(out, canon) {
			out = append(out, canon)
		}
	}
	return out, nil
}

func defaultKeyOps(rsaKey bool) []string {
	if rsaKey {
		return []string{"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
	}
	return []string{"sign", "verify"}
}

// normKty checks a key type against the vault: HSM types need a premium
// vault or a Managed HSM, which turns every key into an HSM key.
func (v *vault) normKty(kty string, hsm bool) (string, *apiError) {
	switch kty {
	case "RSA", "EC":
		if hsm || v.managedHSM {
			kty += "-HSM"
		}
	case "RSA-HSM", "EC-HSM":
	case "oct", "oct-HSM":
		return "", badParam("Key type %s is not supported by this emulator (it serves RSA and EC keys).", kty)
	case "":
		return "", badParam("The parameter kty is required.")
	default:
		return "", badParam("Invalid key type (kty) %q.", kty)
	}
	if strings.HasSuffix(kty, "-HSM") && !v.managedHSM && v.sku != SKUPremium {
		return "", badParam("Hardware key operation not allowed on standard vault")
	}
	return kty, nil
}

// generate makes new key material for a create or rotate request.
func generate(kty string, size *int, exp *int, crv string) (crypto.Signer, *apiError) {
	if strings.HasPrefix(kty, "RSA") {
		bits := 2048
		if size != nil {
			bits = *size
		}
		if bits != 2048 && bits != 3072 && bits != 4096 {
			return nil, badParam("Invalid key size %d: RSA keys can be 2048, 3072 or 4096 bits.", bits)
		}
		if crv != "" {
			return nil, badParam("The parameter crv is not valid for RSA keys.")
		}
		if exp != nil && *exp != 65537 {
			return nil, badParam("Public exponent %d is not supported by this emulator (only 65537).", *exp)
		}
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			return nil, errf(http.StatusInternalServerError, CodeInternalServerError, "key generation failed: %v", err)
		}
		return k, nil
	}
	if crv == "" {
		crv = "P-256"
	}
	if crv == "P-256K" {
		return nil, badParam("Curve P-256K is not supported by this emulator.")
	}
	curve, ok := curves[crv]
	if !ok {
		return nil, badParam("Invalid curve name %q.", crv)
	}
	if size != nil && *size != curve.Params().BitSize {
		return nil, badParam("The parameter key_size is not valid for curve %s.", crv)
	}
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, CodeInternalServerError, "key generation failed: %v", err)
	}
	return k, nil
}

// applyAttrs applies request attributes to a version.
func applyAttrs(kv *keyVersion, a *inAttributes) *apiError {
	if a == nil {
		return nil
	}
	if a.Enabled != nil {
		kv.Enabled = *a.Enabled
	}
	if a.NBF != nil {
		kv.NBF = a.NBF
	}
	if a.Exp != nil {
		kv.Exp = a.Exp
	}
	if kv.NBF != nil && kv.Exp != nil && *kv.Exp <= *kv.NBF {
		return badParam("The expiry date must be after the not-before date.")
	}
	if a.Exportable != nil {
		kv.Exportable = *a.Exportable
	}
	return nil
}

// deletedConflict is the 409 for a name that is deleted but not purged.
// deletedConflict is the service's refusal to reuse the name of deleted
// key k: still being deleted, or deleted and recoverable.
func deletedConflict(k *keyObj, now time.Time) *apiError {
	if k.beingDeleted(now) {
		e := errf(http.StatusConflict, CodeConflict, "Key %s is currently being deleted and cannot be re-created; retry later.", k.Name)
		e.inner = CodeObjectIsBeingDeleted
		return e
	}
	name := k.Name
	e := errf(http.StatusConflict, CodeConflict, "Key %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.", name)
	e.inner = CodeObjectIsDeletedButRecoverable
	return e
}

// addVersion stores a new version as the latest one, creating the key if
// needed, and returns the bundle. It refuses a soft-deleted name.
func (v *vault) addVersion(c *call, name string, kv *keyVersion) (keyBundle, *apiError) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.purgeExpired(c.now)
	if d, ok := v.deleted[lower(name)]; ok {
		return keyBundle{}, deletedConflict(d, c.now)
	}
	k := v.keys[lower(name)]
	if k == nil {
		k = &keyObj{Name: name, Versions: map[string]*keyVersion{}}
		v.keys[lower(name)] = k
	}
	ts := c.now.Unix()
	if kv.Created == 0 {
		kv.Created = ts
	}
	if kv.Updated == 0 {
		kv.Updated = ts
	}
	k.Versions[kv.Version] = kv
	k.Latest = kv.Version
	return v.bundle(c.base, k, kv), nil
}

func (s *Server) createKey(c *call) (int, any, bool, *apiError) {
	if err := checkName(c.rt.name); err != nil {
		return 0, nil, false, err
	}
	var p createParams
	if err := decode(c.body, &p); err != nil {
		return 0, nil, false, err
	}
	kty, aerr := c.v.normKty(p.Kty, false)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	if err := checkTags(p.Tags); err != nil {
		return 0, nil, false, err
	}
	isRSA := strings.HasPrefix(kty, "RSA")
	ops := defaultKeyOps(isRSA)
	if p.KeyOps != nil {
		if ops, aerr = normKeyOps(p.KeyOps, isRSA); aerr != nil {
			return 0, nil, false, aerr
		}
	}
	// Refuse a soft-deleted name before spending time on key generation.
	c.v.mu.Lock()
	c.v.purgeExpired(c.now)
	deleted := c.v.deleted[lower(c.rt.name)]
	var conflict *apiError
	if deleted != nil {
		conflict = deletedConflict(deleted, c.now)
	}
	c.v.mu.Unlock()
	if conflict != nil {
		return 0, nil, false, conflict
	}
	priv, aerr := generate(kty, p.KeySize, p.PublicExponent, p.Crv)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	kv, err := newKeyVersion(newVersionID(), kty, ops, priv)
	if err != nil {
		return 0, nil, false, errf(http.StatusInternalServerError, CodeInternalServerError, "%v", err)
	}
	if aerr := applyAttrs(kv, p.Attributes); aerr != nil {
		return 0, nil, false, aerr
	}
	if len(p.Tags) > 0 {
		kv.Tags = p.Tags
	}
	b, aerr := c.v.addVersion(c, c.rt.name, kv)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	return http.StatusOK, b, true, nil
}

// lookup finds a live key and version (latest when version is ""). Callers
// hold v.mu.
func (v *vault) lookup(now time.Time, name, version string) (*keyObj, *keyVersion, *apiError) {
	v.purgeExpired(now)
	k := v.keys[lower(name)]
	if k == nil {
		return nil, nil, keyNotFound(name, version)
	}
	if version == "" {
		return k, k.Versions[k.Latest], nil
	}
	kv := k.Versions[lower(version)]
	if kv == nil {
		return nil, nil, keyNotFound(name, version)
	}
	return k, kv, nil
}

func (s *Server) getKey(c *call) (int, any, bool, *apiError) {
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	k, kv, aerr := c.v.lookup(c.now, c.rt.name, c.rt.version)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	// A disabled key is still read, as on the service: its attributes say
	// it is disabled (unlike a disabled secret, whose value is refused).
	return http.StatusOK, c.v.bundle(c.base, k, kv), false, nil
}

func (s *Server) updateKey(c *call) (int, any, bool, *apiError) {
	var p updateParams
	if err := decode(c.body, &p); err != nil {
		return 0, nil, false, err
	}
	if err := checkTags(p.Tags); err != nil {
		return 0, nil, false, err
	}
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	k, kv, aerr := c.v.lookup(c.now, c.rt.name, c.rt.version)
	if aerr != nil {
		return 0, nil, false, aerr
	}
	next := *kv
	if p.KeyOps != nil {
		ops, aerr := normKeyOps(p.KeyOps, kv.isRSA())
		if aerr != nil {
			return 0, nil, false, aerr
		}
		next.KeyOps = ops
	}
	if aerr := applyAttrs(&next, p.Attributes); aerr != nil {
		return 0, nil, false, aerr
	}
	if p.Tags != nil {
		next.Tags = p.Tags
		if len(p.Tags) == 0 {
			next.Tags = nil
		}
	}
	next.Updated = c.now.Unix()
	*kv = next
	return http.StatusOK, c.v.bundle(c.base, k, kv), true, nil
}

func (s *Server) deleteKey(c *call) (int, any, bool, *apiError) {
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	k, kv, aerr := c.v.lookup(c.now, c.rt.name, "")
	if aerr != nil {
		return 0, nil, false, aerr
	}
	delete(c.v.keys, lower(k.Name))
	k.DeletedDate = c.now.Unix()
	k.ScheduledPurge = c.now.Add(time.Duration(c.v.retentionDays) * 24 * time.Hour).Unix()
	if d := s.opts.DeletionDelay; d > 0 {
		k.DeletionDone = c.now.Add(d).UnixMilli()
	}
	c.v.deleted[lower(k.Name)] = k
	return http.StatusOK, c.v.bundle(c.base, k, kv), true, nil
}

func (s *Server) getDeletedKey(c *call) (int, any, bool, *apiError) {
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	changed := c.v.purgeExpired(c.now)
	k := c.v.deleted[lower(c.rt.name)]
	if k == nil || k.beingDeleted(c.now) {
		return 0, nil, changed, deletedKeyNotFound(c.rt.name)
	}
	return http.StatusOK, c.v.bundle(c.base, k, k.Versions[k.Latest]), changed, nil
}

func (s *Server) purgeDeletedKey(c *call) (int, any, bool, *apiError) {
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	changed := c.v.purgeExpired(c.now)
	k := c.v.deleted[lower(c.rt.name)]
	if k == nil {
		return 0, nil, changed, deletedKeyNotFound(c.rt.name)
	}
	if c.v.purgeProtection {
		return 0, nil, changed, errf(http.StatusForbidden, CodeForbidden,
			"Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.")
	}
	if k.beingDeleted(c.now) {
		return 0, nil, changed, beingDeleted(k)
	}
	delete(c.v.deleted, lower(c.rt.name))
	return http.StatusNoContent, nil, true, nil
}

func (s *Server) recoverDeletedKey(c *call) (int, any, bool, *apiError) {
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	changed := c.v.purgeExpired(c.now)
	k := c.v.deleted[lower(c.rt.name)]
	if k == nil {
		return 0, nil, changed, deletedKeyNotFound(c.rt.name)
	}
	if k.beingDeleted(c.now) {
		return 0, nil, changed, beingDeleted(k)
	}
	if _, live := c.v.keys[lower(c.rt.name)]; live {
		return 0, nil, changed, errf(http.StatusConflict, CodeConflict, "Key %s already exists.", k.Name)
	}
	delete(c.v.deleted, lower(c.rt.name))
	k.DeletedDate, k.ScheduledPurge, k.DeletionDone = 0, 0, 0
	c.v.keys[lower(k.Name)] = k
	return http.StatusOK, c.v.bundle(c.base, k, k.Versions[k.Latest]), true, nil
}

// beingDeleted is the service's answer to a purge or recover of deleted key
// k while its soft delete is still in progress.
func beingDeleted(k *keyObj) *apiError {
	e := errf(http.StatusConflict, CodeConflict, "Key %s is currently being deleted.", k.Name)
	e.inner = CodeObjectIsBeingDeleted
	return e
}
