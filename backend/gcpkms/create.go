package gcpkms

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Create makes a new generation of req.KeyID: a new version of its
// CryptoKey, or the CryptoKey itself (with version 1 and its IAM policy) the
// first time. A CryptoKey that cleanup marked inactive, or that lost its
// labels, is brought back into use (labels fixed), never answered with
// AlreadyExists.
//
// The creator's lease (pending) and the creation count are recorded on the
// CryptoKey with a fresh spire-last-update, in the same write. That write
// is part of the creation: if it fails, Create fails, since the engine
// never serves a generation whose lease is not recorded (another process
// sharing the server ID could retire it). A version made before such a
// failure carries no lease; it is never served, and once SPIRE's retried
// creation supersedes it, it is retired like any superseded version.
func (b *Backend) Create(ctx context.Context, req engine.CreateRequest) (engine.Generation, error) {
	defer b.calls.start()()
	id := cryptoKeyID(b.opts.ServerID, req.KeyID)
	if !cryptoKeyIDPattern.MatchString(id) {
		return engine.Generation{}, engine.Errorf(codes.InvalidArgument, "key ID %q cannot be stored in Cloud KMS: its CryptoKey ID %q must be 1 to 63 letters, digits, '-' or '_'", req.KeyID, id)
	}
	alg, err := algorithmFor(req.Type, b.opts.Scheme)
	if err != nil {
		return engine.Generation{}, err
	}
	name := b.opts.KeyRing + "/cryptoKeys/" + id
	key, err := b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: name}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
	if status.Code(err) == codes.NotFound {
		g, err := b.createKey(ctx, name, id, req, alg)
		if status.Code(err) != codes.AlreadyExists {
			return g, err
		}
		// Another process with this server ID created it meanwhile.
		key, err = b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: name}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
	}
	if err != nil {
		return engine.Generation{}, cloudError(err, "GetCryptoKey", name)
	}
	return b.addVersion(ctx, key, req, alg)
}

// creationLabels returns labels (a key's current labels, nil for a new
// key) as the creation of version writes them: the plugin's own labels
// with spire-last-update at stamp, the creator's pending lease on version
// and the creation count. The creator's lease label keeps its entries for
// other versions, among them its committed lease on the version it serves
// until the new one is committed.
func (b *Backend) creationLabels(labels map[string]string, keyName, version string, req engine.CreateRequest, stamp time.Time) map[string]string {
	out := b.ownKeyLabels(labels, unixLabel(stamp))
	setRecent(out, version, req.RecentCreations)
	lease := req.Lease
	lease.Ref = version
	setLeases(out, keyName, version, []engine.Lease{lease})
	return out
}

// createKey creates the CryptoKey of a SPIRE key, sets its IAM policy and
// waits for version 1. The creation's lease record is written by
// CreateCryptoKey itself.
func (b *Backend) createKey(ctx context.Context, name, id string, req engine.CreateRequest, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm) (engine.Generation, error) {
	stamp := b.clock.Now()
	// CreateCryptoKey makes version 1; its name is derived as Cloud KMS
	// documents (the response carries no primary for signing keys).
	version := versionName(name, 1)
	labels := b.creationLabels(nil, name, version, req, stamp)
	key, err := b.client.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{
		Parent:      b.opts.KeyRing,
		CryptoKeyId: id,
		CryptoKey: &kmspb.CryptoKey{
			Purpose:         kmspb.CryptoKey_ASYMMETRIC_SIGN,
			VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: alg, ProtectionLevel: b.opts.Protection},
			// spire-last-update is set at creation (the built-in plugin
			// waits for its first liveness pass), so a server that dies
			// young leaves keys that other servers can tell are stale.
			Labels: labels,
		},
	}, b.callOptions(ctx, "CreateCryptoKey", creating)...)
	if status.Code(err) == codes.AlreadyExists {
		return engine.Generation{}, err
	}
	if err != nil {
		return engine.Generation{}, cloudError(err, "CreateCryptoKey", name)
	}
	// Until the policy is set, version 1 has only the creator's pending
	// lease and is never served; if this fails, SPIRE's next attempt finds
	// the key and sets the policy (policyOwed) before adding a version.
	if err := b.setPolicy(ctx, key.GetName()); err != nil {
		return engine.Generation{}, err
	}
	g, err := b.finishVersion(ctx, key.GetName(), req.KeyID, version, key.GetCreateTime().AsTime())
	if err != nil {
		return g, err
	}
	g = withRecord(g, name, answeredLabels(labels, key.GetLabels()), stamp)
	g.RecentCreations = recentOf(g.Labels, g.Ref)
	return g, nil
}

// addVersion adds a version to an existing CryptoKey of this server, first
// fixing its algorithm (the key type or rsa_signature_scheme changed); its
// labels (inactive, missing, key_labels changed) are fixed in the update
// that records the creation.
func (b *Backend) addVersion(ctx context.Context, key *kmspb.CryptoKey, req engine.CreateRequest, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm) (engine.Generation, error) {
	name := key.GetName()
	labels := key.GetLabels()
	if id, ok := labels[labelServerID]; ok && id != b.opts.ServerID {
		return engine.Generation{}, engine.Errorf(codes.FailedPrecondition, "CryptoKey %s exists and belongs to server %q (its spire-server-id label), not to this server %q: the server IDs overlap; give this server another key_identifier_value", name, id, b.opts.ServerID)
	}
	if td, ok := labels[labelTrustDomain]; ok && td != b.tdLabel {
		return engine.Generation{}, engine.Errorf(codes.FailedPrecondition, "CryptoKey %s exists and belongs to another trust domain (its spire-server-td label differs): use another key ring or server ID", name)
	}
	if key.GetPurpose() != kmspb.CryptoKey_ASYMMETRIC_SIGN {
		return engine.Generation{}, engine.Errorf(codes.FailedPrecondition, "CryptoKey %s exists with purpose %s, not ASYMMETRIC_SIGN; it was not made by SPIRE: delete it or use another server ID", name, key.GetPurpose())
	}
	if pl := key.GetVersionTemplate().GetProtectionLevel(); pl != b.opts.Protection {
		b.log.Warn("The key's protection level differs from key_protection and Cloud KMS cannot change it; its new versions keep the key's level. To move to the configured level, start the server with a new key_identifier_value",
			"key", name, "key_protection_level", pl.String(), "configured", b.opts.Protection.String())
	}

	if key.GetVersionTemplate().GetAlgorithm() != alg {
		_, err := b.client.UpdateCryptoKey(ctx, &kmspb.UpdateCryptoKeyRequest{
			CryptoKey:  &kmspb.CryptoKey{Name: name, VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: alg, ProtectionLevel: key.GetVersionTemplate().GetProtectionLevel()}},
			UpdateMask: mask("version_template.algorithm"),
		}, b.callOptions(ctx, "UpdateCryptoKey", idempotent)...)
		if err != nil {
			return engine.Generation{}, cloudError(err, "UpdateCryptoKey", name)
		}
	}
	if labels[labelActive] != "true" {
		b.log.Info("Bringing an inactive key back into use", "key", name, "key_id", req.KeyID)
	}

	// A key whose first creation never completed may lack its IAM policy
	// (SetIamPolicy was refused, or the process stopped before it): set it
	// before adding a version, so that no version of the key serves
	// without it. Version 1, never committed, is retired by the usual rule
	// once the new version has settled.
	if policyOwed(name, labels) {
		if err := b.setPolicy(ctx, name); err != nil {
			return engine.Generation{}, err
		}
	}
	var g engine.Generation
	var err error
	// A version still PENDING_GENERATION was made by a creation of this
	// process whose time budget ran out (HSM RSA keys can take long): wait
	// for it rather than leave it behind and make another.
	if _, resume := b.unfinished.Load(name); resume {
		pending, perr := b.pendingVersion(ctx, name, alg)
		if perr != nil {
			return engine.Generation{}, perr
		}
		if pending != nil {
			b.log.Info("Resuming a key version still being generated by an earlier attempt", "version", pending.GetName())
			g, err = b.finishVersion(ctx, name, req.KeyID, pending.GetName(), pending.GetCreateTime().AsTime())
		}
	}
	if g.Ref == "" && err == nil {
		v, cerr := b.client.CreateCryptoKeyVersion(ctx, &kmspb.CreateCryptoKeyVersionRequest{Parent: name, CryptoKeyVersion: &kmspb.CryptoKeyVersion{}},
			b.callOptions(ctx, "CreateCryptoKeyVersion", creating)...)
		if cerr != nil {
			// The version may exist even though the answer was lost.
			b.unfinished.Store(name, true)
			return engine.Generation{}, cloudError(cerr, "CreateCryptoKeyVersion", name)
		}
		g, err = b.finishVersion(ctx, name, req.KeyID, v.GetName(), v.GetCreateTime().AsTime())
	}
	if err != nil {
		return g, err
	}

	// Other servers judge a key by its liveness stamp alone, so a rotation
	// stamps it too, in the update that fixes the plugin's labels (inactive,
	// missing, key_labels changed) and records the creator's lease and the
	// creation count on the new version: the key is then never seen older
	// than its newest version. The update comes after the creation because
	// only then is the version's number known.
	stamp := b.clock.Now()
	update := b.creationLabels(labels, name, g.Ref, req, stamp)
	answer, err := b.updateLabels(ctx, name, update)
	if err != nil {
		b.log.Warn("Could not record the creator's lease on a new key version: the creation fails, the version is never served, and it is retired once a later creation supersedes it", "key_id", req.KeyID, "version", g.Ref, "error", err)
		return engine.Generation{}, engine.Errorf(engine.Code(err), "key %s: new version %s: %w", req.KeyID, g.Ref, err)
	}
	g = withRecord(g, name, answeredLabels(update, answer.GetLabels()), stamp)
	g.RecentCreations = recentOf(g.Labels, g.Ref)
	return g, nil
}

// withRecord returns g with the lease record that labels hold, just
// written at stamp: Updated (the stamp as spire-last-update stores it, to
// the second), Leases and Labels.
func withRecord(g engine.Generation, keyName string, labels map[string]string, stamp time.Time) engine.Generation {
	g.Updated = time.Unix(stamp.Unix(), 0)
	if t, ok := parseUnixLabel(labels[labelLastUpdate]); ok {
		g.Updated = t
	}
	g.Leases, g.Labels = leasesOf(keyName, labels), labels
	return g
}

// answeredLabels returns the labels Cloud KMS answered a write with, or
// those sent when the answer holds none (the service always echoes them;
// a missing map would otherwise read as every lease gone).
func answeredLabels(sent, answered map[string]string) map[string]string {
	if answered == nil {
		return sent
	}
	return answered
}

// finishVersion waits for a version of keyName to be ready, and remembers
// whether it was, so that the next creation knows to resume it.
func (b *Backend) finishVersion(ctx context.Context, keyName, keyID, version string, created time.Time) (engine.Generation, error) {
	g, err := b.readyGeneration(ctx, keyID, version, created)
	if err != nil {
		b.unfinished.Store(keyName, true)
		return g, err
	}
	b.unfinished.Delete(keyName)
	return g, nil
}

// readyGeneration waits for a new version to leave PENDING_GENERATION (HSM
// and RSA-4096 keys take seconds) and returns it with its public key.
func (b *Backend) readyGeneration(ctx context.Context, keyID, version string, created time.Time) (engine.Generation, error) {
	pub, alg, err := b.publicKey(ctx, version)
	if err != nil {
		return engine.Generation{}, err
	}
	return engine.Generation{
		KeyID:     keyID,
		Ref:       version,
		ServerID:  b.opts.ServerID,
		Created:   created,
		Type:      alg.keyType,
		Public:    pub,
		Algorithm: alg.kms.String(),
	}, nil
}

// setPolicy sets key_policy_file's policy, or the default one, on a key the
// plugin just created. The default policy needs the plugin's service
// account email; when no source knows it, the key keeps the key ring's
// inherited permissions only, with a warning.
func (b *Backend) setPolicy(ctx context.Context, keyName string) error {
	policy := b.opts.Policy
	if policy == nil {
		email := b.opts.ServiceAccountEmail
		if email == "" && b.opts.LookupEmail != nil {
			var err error
			if email, err = b.opts.LookupEmail(ctx); err != nil {
				b.log.Debug("Could not find the service account email", "error", err)
			}
		}
		if email == "" {
			b.noPolicyWarning.Do(func() {
				b.log.Warn("Created a key without the default IAM policy: the credentials name no service account to bind roles/cloudkms.signerVerifier to. The key ring's permissions apply; set key_policy_file to choose the key's policy", "key", keyName)
			})
			return nil
		}
		policy = defaultPolicy(email)
	}
	_, err := b.client.SetIamPolicy(ctx, &iampb.SetIamPolicyRequest{Resource: keyName, Policy: policy}, b.callOptions(ctx, "SetIamPolicy", idempotent)...)
	if status.Code(err) == codes.InvalidArgument {
		return engine.Errorf(codes.InvalidArgument, "Cloud KMS SetIamPolicy on %s refused the key's IAM policy, which names %s: no version of the key is served until the policy is set, and SPIRE's next attempt sets it again; create the service account the policy names, or correct the member in key_policy_file (types are case-sensitive: serviceAccount:, user:, group:, domain:): %w",
			keyName, policyMembers(policy), err)
	}
	return cloudError(err, "SetIamPolicy", keyName)
}

// policyOwed reports whether a key's labels show a first creation that
// never completed: spire-recent names version 1 (no version was created
// since) and no lease on the key was ever committed. Such a key may lack
// its IAM policy. A key that served holds a committed lease while it is
// served (a restart records one before any rotation), so its policy is not
// written again; only when that lease could not be recorded does its first
// rotation set the configured policy once more.
func policyOwed(keyName string, labels map[string]string) bool {
	if recentOf(labels, versionName(keyName, 1)) == 0 {
		return false
	}
	return !slices.ContainsFunc(leasesOf(keyName, labels), func(l engine.Lease) bool { return !l.Pending })
}

// policyMembers lists a policy's members for an error message.
func policyMembers(p *iampb.Policy) string {
	var members []string
	for _, b := range p.GetBindings() {
		for _, m := range b.GetMembers() {
			if !slices.Contains(members, m) {
				members = append(members, m)
			}
		}
	}
	return strings.Join(members, ", ")
}

// pendingVersion returns the newest version of a key that is still
// PENDING_GENERATION with algorithm alg, or nil.
func (b *Backend) pendingVersion(ctx context.Context, keyName string, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm) (*kmspb.CryptoKeyVersion, error) {
	it := b.client.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: keyName, Filter: "state = PENDING_GENERATION"},
		b.callOptions(ctx, "ListCryptoKeyVersions", idempotent)...)
	var newest *kmspb.CryptoKeyVersion
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return newest, nil
		}
		if err != nil {
			return nil, cloudError(err, "ListCryptoKeyVersions", keyName)
		}
		if v.GetAlgorithm() == alg && (newest == nil || v.GetCreateTime().AsTime().After(newest.GetCreateTime().AsTime())) {
			newest = v
		}
	}
}
