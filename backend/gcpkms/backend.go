package gcpkms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/kmskeeper/kmskeeper/keymanager"
)

// Options configures a Backend. Config.Open fills it from plugin_data;
// tests build it directly.
type Options struct {
	// KeyRing holds the keys: projects/<p>/locations/<l>/keyRings/<r>.
	KeyRing string
	// TrustDomain and ServerID scope the keys (labels and key names).
	TrustDomain string
	ServerID    string
	// Protection is the protection level of new keys (SOFTWARE or HSM).
	Protection kmspb.ProtectionLevel
	// Scheme is the padding of new RSA keys.
	Scheme Scheme
	// Labels are added to every key the plugin creates or keeps alive.
	Labels map[string]string
	// Policy is set on every created key; nil means the default policy
	// (the plugin's service account as roles/cloudkms.signerVerifier).
	Policy *iampb.Policy
	// ClientOptions reach and authenticate Cloud KMS.
	ClientOptions []option.ClientOption
	// ServiceAccountEmail is the account the default policy binds; when
	// empty, LookupEmail (if set) is asked when a key is first created, and
	// if neither knows, created keys get no policy (with a warning).
	ServiceAccountEmail string
	LookupEmail         func(ctx context.Context) (string, error)
	// WriteInterval paces background writes (liveness labels, destructions);
	// zero means DefaultWriteInterval.
	WriteInterval time.Duration
	// Now stamps spire-last-update; nil means time.Now.
	Now func() time.Time
	// Logger and Metrics receive the backend's logs and retry counts.
	Logger  hclog.Logger
	Metrics keymanager.Metrics
}

// DefaultWriteInterval spaces background writes: 30 a minute, half of the
// project's 60 writes a minute, so that key creation and other servers keep
// room. A burst of writeBurst goes at once (a liveness pass over 4 keys).
const (
	DefaultWriteInterval = 2 * time.Second
	writeBurst           = 5
)

// maxParallelLists bounds concurrent version listings at start-up.
const maxParallelLists = 4

// Backend is the Cloud KMS keymanager.Backend. It holds clients and
// settings, never key state.
type Backend struct {
	opts    Options
	client  *kms.KeyManagementClient
	tdLabel string
	log     hclog.Logger
	metrics keymanager.Metrics
	writes  *rate.Limiter
	now     func() time.Time
	// backoffs are the retry pauses (tests shorten them).
	backoffs backoffs
	// noPolicyWarning makes the "no default policy" warning appear once.
	noPolicyWarning sync.Once
}

var _ keymanager.Backend = (*Backend)(nil)

// New returns a Backend using a new Cloud KMS client. It does not call the
// service.
func New(ctx context.Context, opts Options) (*Backend, error) {
	if err := checkKeyRing(opts.KeyRing); err != nil {
		return nil, keymanager.Errorf(codes.InvalidArgument, "%w", err)
	}
	if err := checkServerID(opts.ServerID); err != nil {
		return nil, keymanager.Errorf(codes.InvalidArgument, "%w", err)
	}
	if opts.Protection == kmspb.ProtectionLevel_PROTECTION_LEVEL_UNSPECIFIED {
		opts.Protection = kmspb.ProtectionLevel_SOFTWARE
	}
	if opts.Scheme == "" {
		opts.Scheme = SchemePKCS1
	}
	client, err := kms.NewKeyManagementClient(ctx, opts.ClientOptions...)
	if err != nil {
		return nil, keymanager.Errorf(codes.FailedPrecondition, "creating the Cloud KMS client (credentials and endpoint): %w", err)
	}
	b := &Backend{
		opts:     opts,
		client:   client,
		tdLabel:  trustDomainLabel(opts.TrustDomain),
		log:      opts.Logger,
		metrics:  opts.Metrics,
		now:      opts.Now,
		backoffs: defaultBackoffs(),
	}
	if b.log == nil {
		b.log = hclog.NewNullLogger()
	}
	if b.metrics == nil {
		b.metrics = nopMetrics{}
	}
	if b.now == nil {
		b.now = time.Now
	}
	interval := opts.WriteInterval
	if interval <= 0 {
		interval = DefaultWriteInterval
	}
	b.writes = rate.NewLimiter(rate.Every(interval), writeBurst)
	return b, nil
}

// Close releases the client's connection.
func (b *Backend) Close() error { return b.client.Close() }

// ListGenerations lists the trust domain's active keys with one filtered
// CryptoKey listing, then the live versions of this server's keys. Other
// servers' keys are one generation each (Ref is the CryptoKey name), whose
// versions are listed only when the key lacks spire-last-update (the
// built-in plugin sets it only after 6 hours), so that its age is that of
// its newest version, not of the CryptoKey.
func (b *Backend) ListGenerations(ctx context.Context) ([]keymanager.Generation, error) {
	filter := fmt.Sprintf("labels.%s = %s AND labels.%s = true", labelTrustDomain, b.tdLabel, labelActive)
	it := b.client.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: b.opts.KeyRing, Filter: filter},
		b.callOptions(ctx, "ListCryptoKeys", idempotent)...)
	var tasks []func() ([]keymanager.Generation, error)
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
			tasks = append(tasks, func() ([]keymanager.Generation, error) { return b.listVersions(ctx, key) })
		default:
			g := b.foreignGeneration(key, keyID, serverID)
			if _, labelled := parseUnixLabel(key.GetLabels()[labelLastUpdate]); labelled {
				tasks = append(tasks, func() ([]keymanager.Generation, error) { return []keymanager.Generation{g}, nil })
				continue
			}
			tasks = append(tasks, func() ([]keymanager.Generation, error) {
				newest, err := b.newestEnabled(ctx, key.GetName())
				if newest.After(g.Updated) {
					g.Updated = newest
				}
				return []keymanager.Generation{g}, err
			})
		}
	}
	return runParallel(tasks)
}

// runParallel runs tasks a few at a time and concatenates their results in
// order; the first error wins.
func runParallel(tasks []func() ([]keymanager.Generation, error)) ([]keymanager.Generation, error) {
	results := make([][]keymanager.Generation, len(tasks))
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
	var out []keymanager.Generation
	for _, r := range results {
		out = append(out, r...)
	}
	return out, nil
}

// foreignGeneration describes another server's key as one generation.
// Without a spire-last-update label, the key's creation time stands for it
// until its versions say better.
func (b *Backend) foreignGeneration(key *kmspb.CryptoKey, keyID, serverID string) keymanager.Generation {
	created := key.GetCreateTime().AsTime()
	updated, ok := parseUnixLabel(key.GetLabels()[labelLastUpdate])
	if !ok {
		updated = created
	}
	g := keymanager.Generation{KeyID: keyID, Ref: key.GetName(), ServerID: serverID, Created: created, Updated: updated}
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

// listVersions lists the live versions of one of this server's keys.
func (b *Backend) listVersions(ctx context.Context, key *kmspb.CryptoKey) ([]keymanager.Generation, error) {
	keyID, _ := spireKeyID(key.GetName(), b.opts.ServerID)
	lastUpdate, hasLastUpdate := parseUnixLabel(key.GetLabels()[labelLastUpdate])
	it := b.client.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: key.GetName(), Filter: liveVersions},
		b.callOptions(ctx, "ListCryptoKeyVersions", idempotent)...)
	var out []keymanager.Generation
	for {
		v, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, cloudError(err, "ListCryptoKeyVersions", key.GetName())
		}
		g := keymanager.Generation{
			KeyID:    keyID,
			Ref:      v.GetName(),
			ServerID: b.opts.ServerID,
			Created:  v.GetCreateTime().AsTime(),
		}
		// A version is as recent as the last liveness stamp of its key or
		// its own creation, whichever is later.
		g.Updated = g.Created
		if hasLastUpdate && lastUpdate.After(g.Updated) {
			g.Updated = lastUpdate
		}
		if a, ok := lookupAlgorithm(v.GetAlgorithm()); ok {
			g.Type, g.Algorithm = a.keyType, a.kms.String()
		}
		out = append(out, g)
	}
}

// KeepAlive stamps spire-last-update on the generation's CryptoKey (and
// re-applies the plugin's labels: spire-active, key_labels). Labels set on
// the key by others are kept.
func (b *Backend) KeepAlive(ctx context.Context, g keymanager.Generation) (keymanager.Generation, error) {
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
	now := b.now()
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

// mask is an update mask of the given paths.
func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

type nopMetrics struct{}

func (nopMetrics) IncrCounter([]string, float32, ...keymanager.Label)    {}
func (nopMetrics) MeasureSince([]string, time.Time, ...keymanager.Label) {}
