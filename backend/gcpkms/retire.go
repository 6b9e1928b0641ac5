package gcpkms

import (
	"context"
	"errors"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Retire schedules a generation's destruction. For this server's version
// that is DestroyCryptoKeyVersion. For another server's key (Ref is the
// CryptoKey) it is what the built-in plugin's cleanup does: destroy every
// enabled version, then label the key spire-active=false once none remain,
// so that no server lists it again.
func (b *Backend) Retire(ctx context.Context, g engine.Generation) error {
	defer b.calls.start()()
	if isVersionName(g.Ref) {
		return b.destroyVersion(ctx, g.Ref)
	}
	return b.retireKey(ctx, g)
}

// destroyVersion schedules one version's destruction; a version already
// scheduled, destroyed or gone is done.
func (b *Backend) destroyVersion(ctx context.Context, version string) error {
	if err := b.pace(ctx, "destroying "+version); err != nil {
		return err
	}
	_, err := b.client.DestroyCryptoKeyVersion(ctx, &kmspb.DestroyCryptoKeyVersionRequest{Name: version},
		b.callOptions(ctx, "DestroyCryptoKeyVersion", idempotent)...)
	switch status.Code(err) {
	case codes.OK, codes.NotFound:
		return nil
	case codes.FailedPrecondition:
		// Only ENABLED and DISABLED versions can be scheduled: find out
		// whether it is already on its way out.
		v, gerr := b.client.GetCryptoKeyVersion(ctx, &kmspb.GetCryptoKeyVersionRequest{Name: version},
			b.callOptions(ctx, "GetCryptoKeyVersion", idempotent)...)
		if gerr == nil && gone(v.GetState()) {
			return nil
		}
	}
	return cloudError(err, "DestroyCryptoKeyVersion", version)
}

// gone reports whether a version state means the key material is (being)
// removed.
func gone(s kmspb.CryptoKeyVersion_CryptoKeyVersionState) bool {
	switch s {
	case kmspb.CryptoKeyVersion_DESTROYED, kmspb.CryptoKeyVersion_DESTROY_SCHEDULED,
		kmspb.CryptoKeyVersion_PENDING_EXTERNAL_DESTRUCTION:
		return true
	}
	return false
}

// retireKey retires another server's key as a whole. The key is read again
// first: if its server kept it alive since it was listed, it is left alone.
func (b *Backend) retireKey(ctx context.Context, g engine.Generation) error {
	key, err := b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: g.Ref}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		return cloudError(err, "GetCryptoKey", g.Ref)
	}
	labels := key.GetLabels()
	if labels[labelServerID] == b.opts.ServerID || labels[labelTrustDomain] != b.tdLabel {
		return engine.Errorf(codes.Internal, "refusing to retire %s as another server's key: its labels name this server or another trust domain", g.Ref)
	}
	if labels[labelActive] != "true" {
		return nil
	}
	if t, ok := parseUnixLabel(labels[labelLastUpdate]); ok && t.After(g.Updated) {
		return engine.Errorf(codes.Aborted, "not retiring %s: server %q kept it alive after it was listed as stale", g.Ref, g.ServerID)
	}

	it := b.client.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: g.Ref, Filter: "state = ENABLED"},
		b.callOptions(ctx, "ListCryptoKeyVersions", idempotent)...)
	var versions []string
	var newest time.Time
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return cloudError(err, "ListCryptoKeyVersions", g.Ref)
		}
		versions = append(versions, v.GetName())
		newest = latest(newest, v.GetCreateTime().AsTime())
	}
	// A version made within the stale period means its server rotated the
	// key recently (it came back, or stamps lag behind): not abandoned.
	if newest.After(g.Updated) && b.clock.Now().Sub(newest) < engine.DefaultStaleAfter {
		return engine.Errorf(codes.Aborted, "not retiring %s: server %q created a version of it on %s, after it was listed as stale", g.Ref, g.ServerID, newest.UTC().Format(time.RFC3339))
	}
	for _, v := range versions {
		if err := b.destroyVersion(ctx, v); err != nil {
			return err
		}
		b.log.Info("Scheduled the destruction of a stale server's key version", "version", v, "server_id", g.ServerID)
	}
	if err := b.pace(ctx, "marking "+g.Ref+" inactive"); err != nil {
		return err
	}
	labels[labelActive] = "false"
	_, err = b.updateLabels(ctx, g.Ref, labels)
	return err
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
