package azurekv

import (
	"context"
	"os"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

// open builds the credential and the azkeys client for c.
func open(_ context.Context, c *Config, p config.OpenParams) (*Backend, error) {
	if c.vault.url == "" {
		if err := c.Check(p.TrustDomain); err != nil {
			return nil, engine.Errorf(codes.InvalidArgument, "%w", err)
		}
	}
	log := p.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	metrics := p.Metrics
	if metrics == nil {
		metrics = engine.NopMetrics{}
	}
	if len(p.ServerID) > maxTagLen {
		return nil, engine.Errorf(codes.InvalidArgument, "the server ID is %d characters long; the spire-server-id tag holds at most %d", len(p.ServerID), maxTagLen)
	}

	cred, err := c.credential()
	if err != nil {
		return nil, engine.Errorf(codes.FailedPrecondition, "setting up %s for %s: %w", c.identity(), c.vault.url, err)
	}
	opts := &azkeys.ClientOptions{
		ClientOptions: c.clientOptions(),
		// The challenge's resource (https://vault.azure.net) can never be a
		// suffix of 127.0.0.1:port, so the check is relaxed for the local
		// emulator, and only for it.
		DisableChallengeResourceVerification: c.vault.loopback,
	}
	opts.Retry = retryOptions()
	clock := &cloudClock{}
	opts.PerRetryPolicies = append(opts.PerRetryPolicies, &tryPolicy{metrics: metrics}, clock)
	client, err := azkeys.NewClient(c.vault.url, cred, opts)
	if err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "creating the Key Vault client for %s: %w", c.vault.url, err)
	}
	if c.vault.kind == kindUnknown && !c.vault.loopback {
		log.Warn("The vault host is not a known Key Vault or Managed HSM name; using the public cloud's authority unless AZURE_AUTHORITY_HOST says otherwise", "key_vault_uri", c.vault.url)
	}
	log.Debug("Opened the vault", "key_vault_uri", c.vault.url, "kind", c.vault.kind.String(), "identity", c.identity(), "key_protection", c.KeyProtection)
	return &Backend{
		client:      client,
		vault:       c.vault,
		identity:    c.identity(),
		trustDomain: p.TrustDomain,
		serverID:    p.ServerID,
		hsm:         c.KeyProtection == protectionHSM,
		tags:        c.KeyTags,
		purge:       c.PurgeDeletedKeys,
		log:         log,
		clock:       clock,
	}, nil
}

// clientOptions are the azcore options shared by the credential and the
// vault client: the cloud the URI names and, in tests, the transport.
func (c *Config) clientOptions() azcore.ClientOptions {
	var o azcore.ClientOptions
	if c.vault.cloudName != "" {
		o.Cloud = c.vault.cloud
	}
	if c.test.authorityHost != "" {
		o.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: c.test.authorityHost}
	}
	if c.test.transport != nil {
		o.Transport = c.test.transport
	}
	o.Telemetry = policy.TelemetryOptions{ApplicationID: "kmskeeper"}
	return o
}

// authorityHost returns the Entra authority the credential will use: the
// cloud's, or azidentity's default (AZURE_AUTHORITY_HOST, else public).
func (c *Config) authorityHost(o azcore.ClientOptions) string {
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
func (c *Config) credential() (azcore.TokenCredential, error) {
	o := c.clientOptions()
	noDiscovery := isLoopbackURL(c.authorityHost(o))
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
