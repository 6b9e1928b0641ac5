package azurekv

import (
	"context"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

// cloudClient is the part of azkeys.Client the backend calls: the seam at
// which this package's fast tests put a fake vault, while the emulator tests
// drive the real client over the wire. *azkeys.Client satisfies it.
type cloudClient interface {
	NewListKeyPropertiesPager(*azkeys.ListKeyPropertiesOptions) *runtime.Pager[azkeys.ListKeyPropertiesResponse]
	NewListDeletedKeyPropertiesPager(*azkeys.ListDeletedKeyPropertiesOptions) *runtime.Pager[azkeys.ListDeletedKeyPropertiesResponse]
	CreateKey(ctx context.Context, name string, p azkeys.CreateKeyParameters, o *azkeys.CreateKeyOptions) (azkeys.CreateKeyResponse, error)
	GetKey(ctx context.Context, name, version string, o *azkeys.GetKeyOptions) (azkeys.GetKeyResponse, error)
	UpdateKey(ctx context.Context, name, version string, p azkeys.UpdateKeyParameters, o *azkeys.UpdateKeyOptions) (azkeys.UpdateKeyResponse, error)
	Sign(ctx context.Context, name, version string, p azkeys.SignParameters, o *azkeys.SignOptions) (azkeys.SignResponse, error)
	DeleteKey(ctx context.Context, name string, o *azkeys.DeleteKeyOptions) (azkeys.DeleteKeyResponse, error)
	PurgeDeletedKey(ctx context.Context, name string, o *azkeys.PurgeDeletedKeyOptions) (azkeys.PurgeDeletedKeyResponse, error)
}

var _ cloudClient = (*azkeys.Client)(nil)

// Options is everything New needs, decided already: the vault, the
// credential, the scope of the keys and how they are made. Config.Open
// builds it from plugin_data; a program embedding the backend builds it
// itself.
type Options struct {
	// VaultURL is the vault or Managed HSM, https only, as key_vault_uri.
	VaultURL string
	// Credential authenticates to the vault. Identity describes it in
	// error messages, never with its secret.
	Credential azcore.TokenCredential
	Identity   string
	// TrustDomain and ServerID scope the keys (the spire-server-td and
	// spire-server-id tags).
	TrustDomain string
	ServerID    string
	// HSM creates EC-HSM and RSA-HSM keys (key_protection = "hsm").
	HSM bool
	// Tags are added to every key created (key_tags).
	Tags map[string]string
	// PurgeDeletedKeys purges retired keys once their soft delete is done.
	PurgeDeletedKeys bool
	// ClientOptions are azcore's options (cloud, transport, telemetry);
	// New adds its own retry rules and per-try policies.
	ClientOptions azcore.ClientOptions
	// Logger and Metrics may be nil: nothing is logged or counted.
	Logger  hclog.Logger
	Metrics engine.Metrics
}

// New builds the azkeys client for opts.VaultURL. No call reaches the vault
// until the engine lists it.
func New(_ context.Context, opts Options) (*Backend, error) {
	v, err := parseVaultURI(opts.VaultURL)
	if err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "%w", err)
	}
	if len(opts.ServerID) > maxTagLen {
		return nil, engine.Errorf(codes.InvalidArgument, "the server ID is %d characters long; the spire-server-id tag holds at most %d", len(opts.ServerID), maxTagLen)
	}
	if opts.Metrics == nil {
		opts.Metrics = engine.NopMetrics{}
	}
	co := &azkeys.ClientOptions{
		ClientOptions: opts.ClientOptions,
		// The challenge's resource (https://vault.azure.net) can never be a
		// suffix of 127.0.0.1:port, so the check is relaxed for the local
		// emulator, and only for it.
		DisableChallengeResourceVerification: v.loopback,
	}
	co.Retry = retryOptions()
	clock := &cloudClock{}
	co.PerRetryPolicies = append(co.PerRetryPolicies, &tryPolicy{metrics: opts.Metrics}, clock)
	client, err := azkeys.NewClient(v.url, opts.Credential, co)
	if err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "creating the Key Vault client for %s: %w", v.url, err)
	}
	return newBackend(opts, v, client, clock), nil
}

// newBackend is the backend over client, which is the real azkeys client
// (New) or a test's fake.
func newBackend(opts Options, v vaultURI, client cloudClient, clock *cloudClock) *Backend {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Backend{
		client:      client,
		vault:       v,
		identity:    opts.Identity,
		trustDomain: opts.TrustDomain,
		serverID:    opts.ServerID,
		hsm:         opts.HSM,
		tags:        opts.Tags,
		purge:       opts.PurgeDeletedKeys,
		log:         log,
		clock:       clock,
		warned:      newOnceSet(),
	}
}

// network overrides how the plugin reaches Azure: set only by this
// package's tests (the emulator's TLS trust and authority), without
// process-wide environment. Open passes none.
type network struct {
	transport     policy.Transporter
	authorityHost string
}

// open builds Options from c and p (with the credential, over n) and calls
// New.
func (c *Config) open(ctx context.Context, p config.OpenParams, n network) (*Backend, error) {
	if c.vault.url == "" {
		if err := c.Check(p.TrustDomain); err != nil {
			return nil, engine.Errorf(codes.InvalidArgument, "%w", err)
		}
	}
	log := p.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	co := c.clientOptions(n)
	cred, err := c.credential(co)
	if err != nil {
		return nil, engine.Errorf(codes.FailedPrecondition, "setting up %s for %s: %w", c.identity(), c.vault.url, err)
	}
	b, err := New(ctx, Options{
		VaultURL:         c.vault.url,
		Credential:       cred,
		Identity:         c.identity(),
		TrustDomain:      p.TrustDomain,
		ServerID:         p.ServerID,
		HSM:              c.KeyProtection == protectionHSM,
		Tags:             c.KeyTags,
		PurgeDeletedKeys: c.PurgeDeletedKeys,
		ClientOptions:    co,
		Logger:           log,
		Metrics:          p.Metrics,
	})
	if err != nil {
		return nil, err
	}
	if c.vault.kind == kindUnknown && !c.vault.loopback {
		log.Warn("The vault host is not a known Key Vault or Managed HSM name; using the public cloud's authority unless AZURE_AUTHORITY_HOST says otherwise", "key_vault_uri", c.vault.url)
	}
	log.Debug("Opened the vault", "key_vault_uri", c.vault.url, "kind", c.vault.kind.String(), "identity", c.identity(), "key_protection", c.KeyProtection)
	return b, nil
}

// clientOptions are the azcore options shared by the credential and the
// vault client: the cloud the URI names and, in tests, the network.
func (c *Config) clientOptions(n network) azcore.ClientOptions {
	var o azcore.ClientOptions
	if c.vault.cloudName != "" {
		o.Cloud = c.vault.cloud
	}
	if n.authorityHost != "" {
		o.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: n.authorityHost}
	}
	if n.transport != nil {
		o.Transport = n.transport
	}
	o.Telemetry = policy.TelemetryOptions{ApplicationID: "kmskeeper"}
	return o
}

// authorityHost returns the Entra authority the credential will use: the
// cloud's, or azidentity's default (AZURE_AUTHORITY_HOST, else public).
func authorityHost(o azcore.ClientOptions) string {
	if h := o.Cloud.ActiveDirectoryAuthorityHost; h != "" {
		return h
	}
	if h := os.Getenv("AZURE_AUTHORITY_HOST"); h != "" {
		return h
	}
	return cloud.AzurePublic.ActiveDirectoryAuthorityHost
}

// credential builds the credential plugin_data asks for, as azidentity's
// authors intend: a client secret when given, the managed identity for
// use_msi, otherwise DefaultAzureCredential (environment, workload identity,
// managed identity, then developer tools). Entra instance discovery is
// skipped only for a loopback authority (the emulator), which Microsoft's
// discovery endpoint cannot know.
func (c *Config) credential(o azcore.ClientOptions) (azcore.TokenCredential, error) {
	noDiscovery := isLoopbackURL(authorityHost(o))
	switch {
	case c.AppID != "":
		return azidentity.NewClientSecretCredential(c.TenantID, c.AppID, c.AppSecret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions:            o,
			DisableInstanceDiscovery: noDiscovery,
		})
	case c.UseMSI:
		return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: o})
	default:
		return azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions:            o,
			DisableInstanceDiscovery: noDiscovery,
		})
	}
}
