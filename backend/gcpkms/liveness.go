package gcpkms

import (
	"context"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/kmskeeper/kmskeeper/engine"
)

// KeepAlive writes the generation's lease record: it stamps
// spire-last-update on the CryptoKey, re-applies the plugin's labels
// (spire-active, key_labels) and records the leases g.Leases holds on the
// version: each holder's entry for it, next to the holder's entries for
// other versions, which are kept. It writes on the labels last read (g.Labels), reading the key
// first only when the engine has none: labels set on the key by others are
// kept. It returns g with Updated, Leases and Labels as the update's answer
// holds them, and RecentCreations unchanged; the answer is the CryptoKey,
// which carries no public key or version of g, so nothing else changes.
func (b *Backend) KeepAlive(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	defer b.calls.start()()
	keyName := keyNameOf(g.Ref)
	current := g.Labels
	if current == nil {
		key, err := b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: keyName}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
		if err != nil {
			return g, engine.Errorf(engine.Code(err), "key %s: keep-alive: %w", g.KeyID, cloudError(err, "GetCryptoKey", keyName))
		}
		current = key.GetLabels()
	}
	if err := b.pace(ctx, "keeping "+keyName+" alive"); err != nil {
		return g, err
	}
	stamp := b.clock.Now()
	labels := b.ownKeyLabels(current, unixLabel(stamp))
	if isVersionName(g.Ref) {
		setLeases(labels, keyName, g.Ref, g.Leases)
	}
	answer, err := b.updateLabels(ctx, keyName, labels)
	if err != nil {
		return g, engine.Errorf(engine.Code(err), "key %s: keep-alive: %w", g.KeyID, err)
	}
	return withRecord(g, keyName, answeredLabels(labels, answer.GetLabels()), stamp), nil
}

// Refresh reads the generation's CryptoKey again: its spire-last-update,
// the leases on its versions (every entry of every holder's label) and the labels the next keep-alive writes
// back. Disabled is left as it is: a signing CryptoKey names no primary
// version, so its state would cost a GetCryptoKeyVersion, and a disabled
// version fails its next signature anyway. RecentCreations is filled when
// the key records it for g's version (it never changes once written), and
// kept otherwise.
func (b *Backend) Refresh(ctx context.Context, g engine.Generation) (engine.Generation, error) {
	defer b.calls.start()()
	keyName := keyNameOf(g.Ref)
	key, err := b.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: keyName}, b.callOptions(ctx, "GetCryptoKey", idempotent)...)
	if err != nil {
		return g, engine.Errorf(engine.Code(err), "key %s: refresh: %w", g.KeyID, cloudError(err, "GetCryptoKey", keyName))
	}
	labels := key.GetLabels()
	g.Leases, g.Labels = leasesOf(keyName, labels), labels
	if t, ok := parseUnixLabel(labels[labelLastUpdate]); ok {
		g.Updated = t
	}
	if n := recentOf(labels, g.Ref); n > 0 {
		g.RecentCreations = n
	}
	return g, nil
}

// keyNameOf returns the CryptoKey a generation's Ref names: the key of a
// version (this server's generations) or the key itself (another server's).
func keyNameOf(ref string) string {
	if key, ok := keyOfVersion(ref); ok {
		return key
	}
	return ref
}

// updateLabels replaces a key's labels (UpdateCryptoKey replaces the whole
// map, so labels is the complete set) and returns the updated key.
func (b *Backend) updateLabels(ctx context.Context, keyName string, labels map[string]string) (*kmspb.CryptoKey, error) {
	key, err := b.client.UpdateCryptoKey(ctx, &kmspb.UpdateCryptoKeyRequest{
		CryptoKey:  &kmspb.CryptoKey{Name: keyName, Labels: labels},
		UpdateMask: mask("labels"),
	}, b.callOptions(ctx, "UpdateCryptoKey", idempotent)...)
	if err != nil {
		return nil, cloudError(err, "UpdateCryptoKey", keyName)
	}
	return key, nil
}
