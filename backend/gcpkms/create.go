package gcpkms

import (
	"context"
	"errors"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// Create makes a new generation of keyID: a new version of its CryptoKey, or
// the CryptoKey itself (with version 1 and its IAM policy) the first time.
// A CryptoKey that cleanup marked inactive, or that lost its labels, is
// brought back into use (labels fixed), never answered with AlreadyExists.
func (b *Backend) Create(ctx context.Context, keyID string, t keymanager.KeyType, lease keymanager.Lease) (keymanager.Generation, error) {
	defer b.calls.start()()
	id := cryptoKeyID(b.opts.ServerID, keyID)
	if !cryptoKeyIDPattern.MatchString(id) {
		return keymanager.Generation{}, keymanager.Errorf(codes.InvalidArgument, "key ID %q cannot be stored in Cloud KMS: its CryptoKey ID %q must be 1 to 63 letters, digits, '-' or '_'", keyID, id)
	}
	alg, err := algorithmFor(t, b.opts.Scheme)
	if err != nil {
		return keymanager.Generation{}, err
	}
	name := b.opts.KeyRing + "/cryptoKeys/" + id
	key, err := b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: name}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
	if status.Code(err) == codes.NotFound {
		g, err := b.createKey(ctx, name, id, keyID, alg, lease)
		if status.Code(err) != codes.AlreadyExists {
			return g, err
		}
		// Another process with this server ID created it meanwhile.
		key, err = b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: name}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
	}
	if err != nil {
		return keymanager.Generation{}, cloudError(err, "GetCryptoKey", name)
	}
	return b.addVersion(ctx, key, keyID, alg, lease)
}

// createKey creates the CryptoKey of a SPIRE key, sets its IAM policy and
// waits for version 1.
func (b *Backend) createKey(ctx context.Context, name, id, keyID string, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm, lease keymanager.Lease) (keymanager.Generation, error) {
	stamp := b.clock.Now()
	// CreateCryptoKey makes version 1; its name is derived as Cloud KMS
	// documents (the response carries no primary for signing keys).
	version := name + "/cryptoKeyVersions/1"
	lease.Ref = version
	labels := b.ownKeyLabels(nil, unixLabel(stamp))
	setLeases(labels, name, version, []keymanager.Lease{lease})
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
		return keymanager.Generation{}, err
	}
	if err != nil {
		return keymanager.Generation{}, cloudError(err, "CreateCryptoKey", name)
	}
	if err := b.setPolicy(ctx, key.GetName()); err != nil {
		return keymanager.Generation{}, err
	}
	g, err := b.finishVersion(ctx, key.GetName(), keyID, version, key.GetCreateTime().AsTime(), time.Unix(stamp.Unix(), 0))
	g.Leases, g.Labels = leasesOf(name, labels), labels
	return g, err
}

// addVersion adds a version to an existing CryptoKey of this server, first
// fixing its algorithm (the key type or rsa_signature_scheme changed) and
// labels (inactive, missing, key_labels changed) in one update.
func (b *Backend) addVersion(ctx context.Context, key *kmspb.CryptoKey, keyID string, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm, lease keymanager.Lease) (keymanager.Generation, error) {
	name := key.GetName()
	labels := key.GetLabels()
	if id, ok := labels[labelServerID]; ok && id != b.opts.ServerID {
		return keymanager.Generation{}, keymanager.Errorf(codes.FailedPrecondition, "CryptoKey %s exists and belongs to server %q (its spire-server-id label), not to this server %q: the server IDs overlap; give this server another key_identifier_value", name, id, b.opts.ServerID)
	}
	if td, ok := labels[labelTrustDomain]; ok && td != b.tdLabel {
		return keymanager.Generation{}, keymanager.Errorf(codes.FailedPrecondition, "CryptoKey %s exists and belongs to another trust domain (its spire-server-td label differs): use another key ring or server ID", name)
	}
	if key.GetPurpose() != kmspb.CryptoKey_ASYMMETRIC_SIGN {
		return keymanager.Generation{}, keymanager.Errorf(codes.FailedPrecondition, "CryptoKey %s exists with purpose %s, not ASYMMETRIC_SIGN; it was not made by SPIRE: delete it or use another server ID", name, key.GetPurpose())
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
			return keymanager.Generation{}, cloudError(err, "UpdateCryptoKey", name)
		}
	}
	if labels[labelActive] != "true" {
		b.log.Info("Bringing an inactive key back into use", "key", name, "key_id", keyID)
	}

	// A version still PENDING_GENERATION was made by a creation of this
	// process whose time budget ran out (HSM RSA keys can take long): wait
	// for it rather than leave it behind and make another.
	var g keymanager.Generation
	var err error
	if _, resume := b.unfinished.Load(name); resume {
		pending, perr := b.pendingVersion(ctx, name, alg)
		if perr != nil {
			return keymanager.Generation{}, perr
		}
		if pending != nil {
			b.log.Info("Resuming a key version still being generated by an earlier attempt", "version", pending.GetName())
			g, err = b.finishVersion(ctx, name, keyID, pending.GetName(), pending.GetCreateTime().AsTime(), time.Time{})
		}
	}
	if g.Ref == "" && err == nil {
		v, cerr := b.client.CreateCryptoKeyVersion(ctx, &kmspb.CreateCryptoKeyVersionRequest{Parent: name, CryptoKeyVersion: &kmspb.CryptoKeyVersion{}},
			b.callOptions(ctx, "CreateCryptoKeyVersion", creating)...)
		if cerr != nil {
			// The version may exist even though the answer was lost.
			b.unfinished.Store(name, true)
			return keymanager.Generation{}, cloudError(cerr, "CreateCryptoKeyVersion", name)
		}
		g, err = b.finishVersion(ctx, name, keyID, v.GetName(), v.GetCreateTime().AsTime(), time.Time{})
	}
	if err != nil {
		return g, err
	}

	// Other servers judge a key by its liveness stamp alone, so a rotation
	// stamps it too, in the update that fixes the plugin's labels (inactive,
	// missing, key_labels changed) and records the creator's lease on the
	// new version: the key is then never seen older than its newest version.
	// The update comes after the creation because only then is the version's
	// number known; if it fails, the creation fails, and the version it
	// made is retired by a later cleanup pass.
	now := b.clock.Now()
	update := b.ownKeyLabels(labels, unixLabel(now))
	lease.Ref = g.Ref
	setLeases(update, name, g.Ref, []keymanager.Lease{lease})
	if err := b.updateLabels(ctx, name, update); err != nil {
		return keymanager.Generation{}, err
	}
	g.Updated = time.Unix(now.Unix(), 0)
	g.Leases, g.Labels = leasesOf(name, update), update
	return g, nil
}

// finishVersion waits for a version of keyName to be ready, and remembers
// whether it was, so that the next creation knows to resume it.
func (b *Backend) finishVersion(ctx context.Context, keyName, keyID, version string, created, updated time.Time) (keymanager.Generation, error) {
	g, err := b.readyGeneration(ctx, keyID, version, created, updated)
	if err != nil {
		b.unfinished.Store(keyName, true)
		return g, err
	}
	b.unfinished.Delete(keyName)
	return g, nil
}

// readyGeneration waits for a new version to leave PENDING_GENERATION (HSM
// and RSA-4096 keys take seconds) and returns it with its public key.
func (b *Backend) readyGeneration(ctx context.Context, keyID, version string, created, updated time.Time) (keymanager.Generation, error) {
	pub, alg, err := b.publicKey(ctx, version)
	if err != nil {
		return keymanager.Generation{}, err
	}
	return keymanager.Generation{
		KeyID:     keyID,
		Ref:       version,
		ServerID:  b.opts.ServerID,
		Created:   created,
		Updated:   updated,
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
	return cloudError(err, "SetIamPolicy", keyName)
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
