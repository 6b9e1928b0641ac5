package gcpkms

import (
	"context"
	"slices"
	"sync"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/kmskeeper/kmskeeper/engine"
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
	// Now is the local clock. Once Cloud KMS has reported its time (a
	// Date header, a creation time) it only measures the time elapsed
	// since; until then it stands for the cloud's time. Nil means
	// time.Now, whose monotonic reading no wall clock step moves.
	Now func() time.Time
	// Logger and Metrics receive the backend's logs and retry counts.
	Logger  hclog.Logger
	Metrics engine.Metrics
}

// DefaultWriteInterval spaces background writes: 30 a minute, half of the
// project's 60 writes a minute, so that key creation and other servers keep
// room. A burst of writeBurst goes at once (a liveness pass over 4 keys and
// the retirement of the versions a rotation superseded).
const (
	DefaultWriteInterval = 2 * time.Second
	writeBurst           = 10
)

// maxParallelLists bounds concurrent version listings at start-up.
const maxParallelLists = 4

// Backend is the Cloud KMS engine.Backend. It holds clients and
// settings, never key state.
type Backend struct {
	opts    Options
	client  cloudClient
	tdLabel string
	log     hclog.Logger
	metrics engine.Metrics
	writes  *pacer
	clock   *cloudClock
	// calls are the calls in progress, which Close waits for.
	calls *inflight
	// backoffs are the retry pauses (tests shorten them).
	backoffs backoffs
	// noPolicyWarning makes the "no default policy" warning appear once.
	noPolicyWarning sync.Once
	// unfinished holds the names of the CryptoKeys whose last creation in
	// this process ended without a usable version (the budget ran out while
	// Cloud KMS generated it, or the answer was lost). Only for those does
	// the next creation pay a listing to resume a version still
	// PENDING_GENERATION; after a restart such a version is one more
	// generation found by listing (the newest serves, the others retire).
	unfinished sync.Map
}

var (
	_ engine.Backend    = (*Backend)(nil)
	_ engine.CloudTimer = (*Backend)(nil)
	_ engine.Closer     = (*Backend)(nil)
)

// New returns a Backend using a new Cloud KMS client. It does not call the
// service. Config.Open calls it with the options plugin_data gives.
func New(ctx context.Context, opts Options) (*Backend, error) {
	opts, err := checkOptions(opts)
	if err != nil {
		return nil, err
	}
	clock := newCloudClock(opts.Now)
	// Every answer's Date header and creation times move the clock.
	clientOpts := append(slices.Clip(opts.ClientOptions), option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(clock.interceptor)))
	client, err := kms.NewKeyManagementClient(ctx, clientOpts...)
	if err != nil {
		return nil, engine.Errorf(codes.FailedPrecondition, "creating the Cloud KMS client (credentials and endpoint): %w", err)
	}
	return assemble(opts, kmsClient{client}, clock), nil
}

// newWithClient returns a Backend calling Cloud KMS through client (a test's
// fake); opts.ClientOptions are not used.
func newWithClient(opts Options, client cloudClient) (*Backend, error) {
	opts, err := checkOptions(opts)
	if err != nil {
		return nil, err
	}
	return assemble(opts, client, newCloudClock(opts.Now)), nil
}

// checkOptions checks opts and fills in the defaults.
func checkOptions(opts Options) (Options, error) {
	if err := checkKeyRing(opts.KeyRing); err != nil {
		return opts, engine.Errorf(codes.InvalidArgument, "%w", err)
	}
	if err := checkServerID(opts.ServerID); err != nil {
		return opts, engine.Errorf(codes.InvalidArgument, "server ID %q: %w", opts.ServerID, err)
	}
	if opts.Protection == kmspb.ProtectionLevel_PROTECTION_LEVEL_UNSPECIFIED {
		opts.Protection = kmspb.ProtectionLevel_SOFTWARE
	}
	if opts.Scheme == "" {
		opts.Scheme = SchemePKCS1
	}
	return opts, nil
}

// assemble builds a Backend over a client and the clock that client's
// answers move.
func assemble(opts Options, client cloudClient, clock *cloudClock) *Backend {
	b := &Backend{
		opts:     opts,
		client:   client,
		tdLabel:  trustDomainLabel(opts.TrustDomain),
		log:      opts.Logger,
		metrics:  opts.Metrics,
		backoffs: defaultBackoffs(),
		clock:    clock,
		calls:    newInflight(),
	}
	if b.log == nil {
		b.log = hclog.NewNullLogger()
	}
	if b.metrics == nil {
		b.metrics = engine.NopMetrics{}
	}
	interval := opts.WriteInterval
	if interval <= 0 {
		interval = DefaultWriteInterval
	}
	b.writes = &pacer{clock: b.clock, interval: interval, burst: writeBurst}
	return b
}

// Close releases the client's connection once the calls in progress are
// done (they end by their deadlines).
func (b *Backend) Close() error {
	b.calls.wait()
	return b.client.Close()
}

// mask is an update mask of the given paths.
func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }
