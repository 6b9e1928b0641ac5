package gcpkms

import (
	"context"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// KeepAlive stamps spire-last-update on the generation's CryptoKey (and
// re-applies the plugin's labels: spire-active, key_labels). Labels set on
// the key by others are kept.
func (b *Backend) KeepAlive(ctx context.Context, g keymanager.Generation) (keymanager.Generation, error) {
	defer b.calls.start()()
	keyName := g.Ref
	if isVersionName(g.Ref) {
		keyName, _ = keyOfVersion(g.Ref)
	}
	key, err := b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: keyName}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
	if err != nil {
		return g, cloudError(err, "GetCryptoKey", keyName)
	}
	if err := b.pace(ctx, "keeping "+keyName+" alive"); err != nil {
		return g, err
	}
	now := b.clock.Now()
	labels := b.ownKeyLabels(key.GetLabels(), unixLabel(now))
	if err := b.updateLabels(ctx, keyName, labels); err != nil {
		return g, err
	}
	g.Updated = time.Unix(now.Unix(), 0)
	return g, nil
}

// updateLabels replaces a key's labels (UpdateCryptoKey replaces the whole
// map, so labels is the complete set).
func (b *Backend) updateLabels(ctx context.Context, keyName string, labels map[string]string) error {
	_, err := b.client.UpdateCryptoKey(ctx, &kmspb.UpdateCryptoKeyRequest{
		CryptoKey:  &kmspb.CryptoKey{Name: keyName, Labels: labels},
		UpdateMask: mask("labels"),
	}, b.callOptions(ctx, "UpdateCryptoKey", idempotent)...)
	return cloudError(err, "UpdateCryptoKey", keyName)
}
