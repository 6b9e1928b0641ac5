package azurekv

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Backend keeps SPIRE keys in one Key Vault or Managed HSM. It implements
// engine.Backend and holds no key state: only the client and the
// configuration.
type Backend struct {
	client      cloudClient
	vault       vaultURI
	identity    string
	trustDomain string
	serverID    string
	hsm         bool
	tags        map[string]string
	purge       bool
	log         hclog.Logger
	clock       *cloudClock // the vault's time, from its answers' Date headers

	// warned holds the keys already warned about (odd keys, purges given
	// up), so that each warning is logged once per key per process.
	warned *onceSet
}

var _ engine.Backend = (*Backend)(nil)

// keyOps are the operations of every key created, as the built-in plugin
// sets them: the key can sign and verify, nothing else.
var keyOps = []*azkeys.KeyOperation{ptr(azkeys.KeyOperationSign), ptr(azkeys.KeyOperationVerify)}

// ListGenerations lists the vault once (Key Vault has no server-side tag
// filter) and keeps the keys named spire-key-... that carry this trust
// domain's tag: this server's and other servers'. A key with the trust
// domain's tag but an odd name or server tag is skipped with a warning.
func (b *Backend) ListGenerations(ctx context.Context) ([]engine.Generation, error) {
	c := &call{op: "ListKeys", perm: "list"}
	ctx = withCall(ctx, c)
	var out []engine.Generation
	pager := b.client.NewListKeyPropertiesPager(nil)
	listed := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, b.fail(ctx, c, err)
		}
		for _, kp := range page.Value {
			listed++
			if kp == nil || kp.KID == nil || (kp.Managed != nil && *kp.Managed) {
				continue
			}
			name := kp.KID.Name()
			parsed, problem := parseKey(name, kp.Tags, b.trustDomain)
			if problem != "" && b.warned.first("odd "+name) {
				b.log.Warn("Skipping a key that carries this trust domain's tag but is not laid out as SPIRE's keys are", "key", name, "problem", string(problem))
			}
			if problem != "" || parsed.keyID == "" {
				continue
			}
			r := recordOf(kp.Tags, kp.Attributes, name)
			out = append(out, engine.Generation{
				KeyID:           parsed.keyID,
				Ref:             name,
				ServerID:        parsed.serverID,
				Created:         r.created,
				Updated:         r.updated,
				Disabled:        r.disabled,
				Leases:          r.leases,
				Labels:          r.labels,
				RecentCreations: r.recent,
			})
		}
	}
	b.log.Debug("Listed the vault", "keys", listed, "trust_domain_keys", len(out))
	if b.purge {
		b.purgeRetired(ctx)
	}
	return out, nil
}

// Create creates a new key object spire-key-<UUIDv7>-<key ID> with the
// built-in plugin's tags, the user's key_tags and the lease record: the
// creator's pending lease and the creation count. The answer carries the
// whole key, so the generation is returned complete: public key, version,
// times and tags.
func (b *Backend) Create(ctx context.Context, req engine.CreateRequest) (engine.Generation, error) {
	name := keyName(req.KeyID)
	c := &call{op: "CreateKey", key: name, perm: "create"}
	ctx = withCall(ctx, c)
	lease := req.Lease
	lease.Ref = name
	params := azkeys.CreateKeyParameters{
		KeyOps: keyOps,
		Tags: b.leaseTags(engine.Generation{
			KeyID: req.KeyID, Ref: name, Leases: []engine.Lease{lease}, RecentCreations: req.RecentCreations,
		}),
		KeyAttributes: &azkeys.KeyAttributes{Enabled: ptr(true)},
	}
	kty := azkeys.KeyTypeEC
	if b.hsm {
		kty = azkeys.KeyTypeECHSM
	}
	switch req.Type {
	case engine.ECP256:
		params.Curve = ptr(azkeys.CurveNameP256)
	case engine.ECP384:
		params.Curve = ptr(azkeys.CurveNameP384)
	case engine.RSA2048, engine.RSA4096:
		kty = azkeys.KeyTypeRSA
		if b.hsm {
			kty = azkeys.KeyTypeRSAHSM
		}
		params.KeySize = ptr(int32(2048))
		if req.Type == engine.RSA4096 {
			params.KeySize = ptr(int32(4096))
		}
	default:
		return engine.Generation{}, engine.Errorf(codes.InvalidArgument, "key %s: key type %v is not supported", req.KeyID, req.Type)
	}
	params.Kty = &kty
	resp, err := b.client.CreateKey(ctx, name, params, nil)
	if err != nil {
		return engine.Generation{}, b.fail(ctx, c, err)
	}
	m, err := materialOf(resp.KeyBundle, name)
	if err != nil {
		return engine.Generation{}, engine.Errorf(codes.Internal, "%s: CreateKey on key %s: %v", b.vault.url, name, err)
	}
	if m.typ != req.Type {
		return engine.Generation{}, engine.Errorf(codes.Internal, "%s: CreateKey on key %s: asked for %v, the vault created %v", b.vault.url, name, req.Type, m.typ)
	}
	r := recordOf(resp.Tags, resp.Attributes, name)
	return engine.Generation{
		KeyID:           req.KeyID,
		Ref:             name,
		Version:         m.version,
		ServerID:        b.serverID,
		Created:         r.created,
		Updated:         r.updated,
		Type:            m.typ,
		Public:          m.public,
		Disabled:        r.disabled,
		Leases:          r.leases,
		Labels:          r.labels,
		RecentCreations: r.recent,
	}, nil
}

// Fetch reads the current version of a listed key: its public key, and the
// version that Sign will then name, so that a version added to the key by
// someone else can never sign under this key's fingerprint. It returns g
// with Public, Type, Version and Disabled set from the answer; the lease
// record stays as listed (Refresh reads it when it matters).
func (b *Backend) Fetch(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	resp, err := b.getKey(ctx, g.Ref)
	if err != nil {
		return g, err
	}
	m, err := materialOf(resp.KeyBundle, g.Ref)
	if err != nil {
		return g, engine.Errorf(codes.FailedPrecondition, "%s: GetKey on key %s: it cannot serve SPIRE: %v", b.vault.url, g.Ref, err)
	}
	r := recordOf(resp.Tags, resp.Attributes, g.Ref)
	g.Public, g.Type, g.Version, g.Disabled = m.public, m.typ, m.version, r.disabled
	g.RecentCreations = r.fill(g.RecentCreations)
	b.log.Debug("Fetched key", "key_id", g.KeyID, "key", g.Ref, "version", g.Version, "type", g.Type.String())
	return g, nil
}

// getKey reads the current version of key name.
func (b *Backend) getKey(ctx context.Context, name string) (azkeys.GetKeyResponse, error) {
	c := &call{op: "GetKey", key: name, perm: "get"}
	ctx = withCall(ctx, c)
	resp, err := b.client.GetKey(ctx, name, "", nil)
	if err != nil {
		return resp, b.fail(ctx, c, err)
	}
	return resp, nil
}

// material is the key a bundle holds: its public half and which version of
// the key object it is.
type material struct {
	public  crypto.PublicKey
	typ     engine.KeyType
	version string
}

// materialOf reads the key of a bundle the vault returned for key name, and
// checks that it is that key's, with a version.
func materialOf(kb azkeys.KeyBundle, name string) (material, error) {
	if kb.Key == nil || kb.Key.KID == nil || kb.Key.KID.Version() == "" {
		return material{}, errors.New("the vault returned a key without a versioned identifier")
	}
	if got := kb.Key.KID.Name(); !strings.EqualFold(got, name) {
		return material{}, fmt.Errorf("the vault returned key %s", got)
	}
	pub, t, err := publicKey(kb.Key)
	if err != nil {
		return material{}, err
	}
	return material{public: pub, typ: t, version: kb.Key.KID.Version()}, nil
}

// record is a key object's lease record and state as an answer carries
// them: its attributes and its tags.
type record struct {
	created, updated time.Time
	disabled         bool
	leases           []engine.Lease
	labels           map[string]string
	recent           int
}

// recordOf reads the lease record of key ref from its tags and attributes.
func recordOf(tags map[string]*string, a *azkeys.KeyAttributes, ref string) record {
	r := record{labels: labelsOf(tags)}
	r.leases, r.recent = decodeRecord(tagValue(tags, tagLeases), ref)
	if a != nil {
		r.created, r.updated = timeOf(a.Created), timeOf(a.Updated)
		r.disabled = a.Enabled != nil && !*a.Enabled
	}
	return r
}

// fill returns the creation count to carry on a generation whose count was
// have: have itself, or the record's when have is none. The count is fixed at
// creation, so a generation read from the vault already holds the recorded
// one and a later answer never replaces it; only a generation built without
// one (by hand, before this field existed) learns it here.
func (r record) fill(have int) int {
	if have > 0 {
		return have
	}
	return r.recent
}

// Sign signs digest with the fetched version of the key. ECDSA signatures
// are converted from r||s to DER.
func (b *Backend) Sign(ctx context.Context, g engine.Generation, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg, ok := signAlgorithm(g.Type, opts)
	if !ok {
		return nil, engine.Errorf(codes.InvalidArgument, "key %s: Key Vault cannot sign a %v digest with a %v key (P-256 signs SHA-256, P-384 signs SHA-384, RSA signs SHA-256/384/512 with PKCS#1 v1.5 or PSS)", g.KeyID, hashName(opts), g.Type)
	}
	c := &call{op: "Sign", key: g.Ref, perm: "sign"}
	ctx = withCall(ctx, c)
	resp, err := b.client.Sign(ctx, g.Ref, g.Version, azkeys.SignParameters{Algorithm: &alg, Value: digest}, nil)
	if err != nil {
		return nil, b.fail(ctx, c, err)
	}
	if v, ok := otherVersion(resp.KID, g.Version); ok {
		return nil, engine.Errorf(codes.Internal, "%s: Sign on key %s: asked for version %s, the vault signed with %s", b.vault.url, g.Ref, g.Version, v)
	}
	if !g.Type.IsEC() {
		return resp.Result, nil
	}
	der, err := p1363ToDER(resp.Result, g.Type)
	if err != nil {
		return nil, engine.Errorf(codes.Internal, "%s: Sign on key %s: %v", b.vault.url, g.Ref, err)
	}
	return der, nil
}

// otherVersion returns the version kid names when it is not want; ok is
// false when it is want, or when either is unknown. The usual answer, a kid
// ending in "/<want>", is settled without parsing the URL, which cost about
// 5 µs per signature.
func otherVersion(kid *azkeys.ID, want string) (string, bool) {
	if kid == nil || want == "" {
		return "", false
	}
	if k := string(*kid); strings.HasSuffix(k, want) && strings.HasSuffix(k[:len(k)-len(want)], "/") {
		return "", false
	}
	v := kid.Version()
	return v, v != "" && v != want
}

func hashName(opts crypto.SignerOpts) string {
	if opts == nil {
		return "unhashed"
	}
	return opts.HashFunc().String()
}

// KeepAlive moves the key's updated time with one UpdateKey that sets the
// same key operations, as the built-in plugin does, so that its 14-day rule
// on other servers never takes the key for abandoned. The same update writes
// the key's tags: those last read (g.Labels), the plugin's own and the
// lease record (g.Leases and the creation count). It reads nothing itself;
// the answer carries the key, so a key adopted at start needs no separate
// fetch. It returns g with Updated, Leases and Labels from the answer, and
// Public and Version of the key's current version; every other field is g's.
func (b *Backend) KeepAlive(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	c := &call{op: "UpdateKey", key: g.Ref, perm: "update"}
	ctx = withCall(ctx, c)
	resp, err := b.client.UpdateKey(ctx, g.Ref, "", azkeys.UpdateKeyParameters{KeyOps: keyOps, Tags: b.leaseTags(g)}, nil)
	if err != nil {
		return g, b.fail(ctx, c, err)
	}
	m, err := materialOf(resp.KeyBundle, g.Ref)
	if err != nil {
		return g, engine.Errorf(codes.FailedPrecondition, "%s: UpdateKey on key %s: it cannot serve SPIRE: %v", b.vault.url, g.Ref, err)
	}
	r := recordOf(resp.Tags, resp.Attributes, g.Ref)
	if !r.updated.IsZero() {
		g.Updated = r.updated
	}
	g.Leases, g.Labels = r.leases, r.labels
	g.Public, g.Version = m.public, m.version
	g.RecentCreations = r.fill(g.RecentCreations)
	return g, nil
}

// Refresh reads the key's lease record again: its leases, the tags the next
// keep-alive writes back, its updated time, and whether it is disabled. It
// returns g with those (Updated, Leases, Labels, Disabled) as the vault
// holds them; every other field is g's, the key material included (Refresh
// decides nothing on it, so a key whose public half is odd still refreshes).
func (b *Backend) Refresh(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	resp, err := b.getKey(ctx, g.Ref)
	if err != nil {
		return g, err
	}
	if k := resp.Key; k != nil && k.KID != nil && !strings.EqualFold(k.KID.Name(), g.Ref) {
		return g, engine.Errorf(codes.Internal, "%s: GetKey on key %s: the vault returned key %s", b.vault.url, g.Ref, k.KID.Name())
	}
	r := recordOf(resp.Tags, resp.Attributes, g.Ref)
	if !r.updated.IsZero() {
		g.Updated = r.updated
	}
	g.Leases, g.Labels, g.Disabled = r.leases, r.labels, r.disabled
	g.RecentCreations = r.fill(g.RecentCreations)
	return g, nil
}

// Retire deletes the key object (soft delete: recoverable for the vault's
// retention period) and, with purge_deleted_keys, purges it. A key already
// gone is not an error. The soft delete is asynchronous on the service: for
// a few seconds after the delete, the purge is refused (409
// ObjectIsBeingDeleted) or the deleted key is not found yet (404). Retire
// never waits for it: it tries the purge once, and a purge that cannot be
// done yet is done by a later listing (purgeRetired), of this process or of
// the next one.
func (b *Backend) Retire(ctx context.Context, g engine.Generation) error {
	if !strings.HasPrefix(g.Ref, keyPrefix) {
		return engine.Errorf(codes.Internal, "%s: refusing to delete key %s: it is not named like SPIRE's keys", b.vault.url, g.Ref)
	}
	c := &call{op: "DeleteKey", key: g.Ref, perm: "delete"}
	dctx := withCall(ctx, c)
	_, err := b.client.DeleteKey(dctx, g.Ref, nil)
	switch {
	case err != nil && !isStatus(err, http.StatusNotFound):
		return b.fail(dctx, c, err)
	case !b.purge:
		return nil
	}
	// Deleted now, or earlier (perhaps without the purge): purge it.
	return b.purgeDeleted(ctx, g.Ref)
}

// purgeDeleted tries once to purge the deleted key name. A soft delete
// still in progress (409, or 404 before the deleted key shows) is not an
// error: purgeRetired purges the key once the vault lists it as deleted.
func (b *Backend) purgeDeleted(ctx context.Context, name string) error {
	c := &call{op: "PurgeDeletedKey", key: name, perm: "purge"}
	ctx = withCall(ctx, c)
	_, err := b.client.PurgeDeletedKey(ctx, name, nil)
	switch {
	case err == nil:
		b.log.Debug("Purged the deleted key", "key", name)
		return nil
	case isStatus(err, http.StatusNotFound) || isStatus(err, http.StatusConflict):
		b.log.Debug("The vault is still deleting the key; a later cleanup pass purges it", "key", name)
		return nil
	}
	return b.fail(ctx, c, err)
}

// purgeRetired purges the deleted keys of this server (named and tagged as
// its keys are) that the vault lists: those whose purge was refused while
// the soft delete was in progress, or lost (a restart, an error). It runs
// with purge_deleted_keys after every listing and never fails the listing.
// A purge that fails for a passing reason (throttling, the network) is tried
// again at the next listing; one refused otherwise (purge protection, a
// missing permission) is warned about once and not tried again by this
// process.
func (b *Backend) purgeRetired(ctx context.Context) {
	c := &call{op: "ListDeletedKeys", perm: "list"}
	lctx := withCall(ctx, c)
	var names []string
	for pager := b.client.NewListDeletedKeyPropertiesPager(nil); pager.More(); {
		page, err := pager.NextPage(lctx)
		if err != nil {
			if b.warned.first("list deleted") {
				b.log.Warn("Could not list the vault's deleted keys to purge this server's retired keys; they stay soft-deleted until the vault's retention ends", "error", b.fail(lctx, c, err).Error())
			}
			return
		}
		for _, kp := range page.Value {
			if kp == nil || kp.KID == nil {
				continue
			}
			name := kp.KID.Name()
			parsed, problem := parseKey(name, kp.Tags, b.trustDomain)
			if problem == "" && parsed.keyID != "" && parsed.serverID == b.serverID && !b.warned.seen("purge "+name) {
				names = append(names, name)
			}
		}
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		err := b.purgeDeleted(ctx, name)
		switch engine.Code(err) {
		case codes.OK:
		case codes.Unavailable, codes.ResourceExhausted, codes.Canceled, codes.DeadlineExceeded:
			b.log.Debug("Could not purge a retired key this time; the next cleanup pass tries again", "key", name, "error", err.Error())
		default:
			if b.warned.first("purge " + name) {
				b.log.Warn("Could not purge a retired key; it stays soft-deleted until the vault's retention ends", "key", name, "error", err.Error())
			}
		}
	}
}

func isStatus(err error, status int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
