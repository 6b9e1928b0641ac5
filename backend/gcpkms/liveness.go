package gcpkms

import (
	"context"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// KeepAlive stamps spire-last-update on the generation's CryptoKey,
// re-applies the plugin's labels (spire-active, key_labels) and records the
// leases g.Leases holds on the version. It writes on the labels last read
// (g.Labels), reading the key first only when the engine has none: labels
// set on the key by others are kept.
func (b *Backend) KeepAlive(ctx context.Context, g keymanager.Generation) (keymanager.Generation, error) {
	defer b.calls.start()()
	keyName := g.Ref
	if isVersionName(g.Ref) {
		keyName, _ = keyOfVersion(g.Ref)
	}
	current := g.Labels
	if current == nil {
		key, err := b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: keyName}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
		if err != nil {
			return g, cloudError(err, "GetCryptoKey", keyName)
		}
		current = key.GetLabels()
	}
	if err := b.pace(ctx, "keeping "+keyName+" alive"); err != nil {
		return g, err
	}
	now := b.clock.Now()
	labels := b.ownKeyLabels(current, unixLabel(now))
	if isVersionName(g.Ref) {
		setLeases(labels, keyName, g.Ref, g.Leases)
	}
	if err := b.updateLabels(ctx, keyName, labels); err != nil {
		return g, err
	}
	g.Updated = time.Unix(now.Unix(), 0)
	g.Leases, g.Labels = leasesOf(keyName, labels), labels
	return g, nil
}

// Refresh reads the generation's CryptoKey again: the leases on its
// versions and the labels the next keep-alive writes back.
func (b *Backend) Refresh(ctx context.Context, g keymanager.Generation) (keymanager.Generation, error) {
	defer b.calls.start()()
	keyName := g.Ref
	if isVersionName(g.Ref) {
		keyName, _ = keyOfVersion(g.Ref)
	}
	key, err := b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: keyName}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
	if err != nil {
		return g, cloudError(err, "GetCryptoKey", keyName)
	}
	g.Leases, g.Labels = leasesOf(keyName, key.GetLabels()), key.GetLabels()
	if t, ok := parseUnixLabel(key.GetLabels()[labelLastUpdate]); ok {
		g.Updated = t
	}
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
