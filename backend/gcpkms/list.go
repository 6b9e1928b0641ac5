package gcpkms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"

	"github.com/kmskeeper/kmskeeper/engine"
)

// ListGenerations lists the trust domain's active keys with one filtered
// CryptoKey listing, then the live versions of this server's keys. Other
// servers' keys are one generation each (Ref is the CryptoKey name), whose
// versions are listed only when the key lacks spire-last-update (the
// built-in plugin sets it only after 6 hours), so that its age is that of
// its newest version, not of the CryptoKey.
func (b *Backend) ListGenerations(ctx context.Context) ([]engine.Generation, error) {
	defer b.calls.start()()
	filter := fmt.Sprintf("labels.%s = %s AND labels.%s = true", labelTrustDomain, b.tdLabel, labelActive)
	it := b.client.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: b.opts.KeyRing, Filter: filter},
		b.callOptions(ctx, "ListCryptoKeys", idempotent)...)
	var tasks []func() ([]engine.Generation, error)
	for {
		key, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, cloudError(err, "ListCryptoKeys", b.opts.KeyRing)
		}
		serverID := key.GetLabels()[labelServerID]
		keyID, ok := spireKeyID(key.GetName(), serverID)
		switch {
		case !ok:
			b.log.Debug("Ignoring a key with the trust domain's label that is not named spire-key-<server ID>-<key ID>", "key", key.GetName())
		case serverID == b.opts.ServerID:
			tasks = append(tasks, func() ([]engine.Generation, error) { return b.listVersions(ctx, key) })
		default:
			g := b.foreignGeneration(key, keyID, serverID)
			if _, labelled := parseUnixLabel(key.GetLabels()[labelLastUpdate]); labelled {
				tasks = append(tasks, func() ([]engine.Generation, error) { return []engine.Generation{g}, nil })
				continue
			}
			tasks = append(tasks, func() ([]engine.Generation, error) {
				newest, err := b.newestEnabled(ctx, key.GetName())
				if newest.After(g.Updated) {
					g.Updated = newest
				}
				return []engine.Generation{g}, err
			})
		}
	}
	return runParallel(tasks)
}

// runParallel runs tasks a few at a time and concatenates their results in
// order; the first error wins.
func runParallel(tasks []func() ([]engine.Generation, error)) ([]engine.Generation, error) {
	results := make([][]engine.Generation, len(tasks))
	errs := make([]error, len(tasks))
	sem := make(chan struct{}, maxParallelLists)
	var wg sync.WaitGroup
	for i, task := range tasks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = task()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []engine.Generation
	for _, r := range results {
		out = append(out, r...)
	}
	return out, nil
}

// foreignGeneration describes another server's key as one generation.
// Without a spire-last-update label, the key's creation time stands for it
// until its versions say better.
func (b *Backend) foreignGeneration(key *kmspb.CryptoKey, keyID, serverID string) engine.Generation {
	created := key.GetCreateTime().AsTime()
	updated, ok := parseUnixLabel(key.GetLabels()[labelLastUpdate])
	if !ok {
		updated = created
	}
	g := engine.Generation{KeyID: keyID, Ref: key.GetName(), ServerID: serverID, Created: created, Updated: updated}
	if a, ok := lookupAlgorithm(key.GetVersionTemplate().GetAlgorithm()); ok {
		g.Type = a.keyType
	}
	return g
}

// newestEnabled returns the creation time of a key's newest enabled
// version (zero if none).
func (b *Backend) newestEnabled(ctx context.Context, keyName string) (time.Time, error) {
	it := b.client.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: keyName, Filter: "state = ENABLED"},
		b.callOptions(ctx, "ListCryptoKeyVersions", idempotent)...)
	var newest time.Time
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return newest, nil
		}
		if err != nil {
			return newest, cloudError(err, "ListCryptoKeyVersions", keyName)
		}
		if t := v.GetCreateTime().AsTime(); t.After(newest) {
			newest = t
		}
	}
}

// liveVersions selects the versions that can be or become a served key.
// PENDING_GENERATION is included so that a version created just before a
// crash is found (and, being the newest, served once ready).
const liveVersions = "state = ENABLED OR state = PENDING_GENERATION"

// listVersions lists the live versions of one of this server's keys. They
// share the CryptoKey's lease record: its spire-last-update, its leases
// (each naming its version) and its labels. The creation count is only on
// the version spire-recent names, the one created last.
func (b *Backend) listVersions(ctx context.Context, key *kmspb.CryptoKey) ([]engine.Generation, error) {
	keyID, _ := spireKeyID(key.GetName(), b.opts.ServerID)
	lastUpdate, hasLastUpdate := parseUnixLabel(key.GetLabels()[labelLastUpdate])
	leases := leasesOf(key.GetName(), key.GetLabels())
	it := b.client.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: key.GetName(), Filter: liveVersions},
		b.callOptions(ctx, "ListCryptoKeyVersions", idempotent)...)
	var out []engine.Generation
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, cloudError(err, "ListCryptoKeyVersions", key.GetName())
		}
		g := engine.Generation{
			KeyID:           keyID,
			Ref:             v.GetName(),
			ServerID:        b.opts.ServerID,
			Created:         v.GetCreateTime().AsTime(),
			Leases:          leases,
			Labels:          key.GetLabels(),
			RecentCreations: recentOf(key.GetLabels(), v.GetName()),
		}
		// Other servers judge the key by its liveness stamp (or, without
		// one, by its versions), so that is what liveness must keep fresh.
		g.Updated = g.Created
		if hasLastUpdate {
			g.Updated = lastUpdate
		}
		if a, ok := lookupAlgorithm(v.GetAlgorithm()); ok {
			g.Type, g.Algorithm = a.keyType, a.kms.String()
		}
		out = append(out, g)
	}
}
