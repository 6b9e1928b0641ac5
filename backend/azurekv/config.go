package azurekv

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

var _ config.ServerIDChecker = (*Config)(nil)

// Key protection levels (key_protection).
const (
	protectionSoftware = "software"
	protectionHSM      = "hsm"
)

// Config is the plugin_data of the Azure backend: every key SPIRE's
// azure_key_vault plugin accepts, in both generations of its documentation,
// plus kmskeeper's own. The common keys (key_identifier_*, intervals, ...)
// are decoded by package config.
type Config struct {
	// KeyVaultURI is the vault or Managed HSM, https only.
	KeyVaultURI string `hcl:"key_vault_uri"`
	// TenantID, AppID and AppSecret are an app registration's client-secret
	// credentials: all three or none.
	TenantID  string `hcl:"tenant_id"`
	AppID     string `hcl:"app_id"`
	AppSecret string `hcl:"app_secret"`
	// SubscriptionID is accepted because the built-in plugin's docs list it;
	// the data plane never needs it.
	SubscriptionID string `hcl:"subscription_id"`
	// UseMSI is the older built-in docs' switch to managed identity only.
	UseMSI bool `hcl:"use_msi"`
	// KeyProtection is "software" (default on a vault) or "hsm" (EC-HSM and
	// RSA-HSM keys; always so on a Managed HSM).
	KeyProtection string `hcl:"key_protection"`
	// KeyTags are added to every key created, for cost and ownership.
	KeyTags map[string]string `hcl:"key_tags"`
	// PurgeDeletedKeys purges retired keys right after deleting them,
	// instead of leaving them soft-deleted for the vault's retention.
	PurgeDeletedKeys bool `hcl:"purge_deleted_keys"`

	vault vaultURI // set by Check
}

// Kind returns the Azure backend's configuration kind, selected by
// key_vault_uri like SPIRE's azure_key_vault plugin.
func Kind() config.Kind {
	return config.Kind{Name: "azure_key_vault", Selector: "key_vault_uri", New: func() config.Backend { return &Config{} }}
}

// Check implements config.Backend: every static check, no I/O.
func (c *Config) Check(trustDomain string) error {
	// Every problem is reported (config.Problems), not only the first.
	var problems config.Problems
	v, err := parseVaultURI(c.KeyVaultURI)
	if err != nil {
		problems = append(problems, err)
	}
	c.vault = v
	set := 0
	for _, s := range []string{c.TenantID, c.AppID, c.AppSecret} {
		if s != "" {
			set++
		}
	}
	switch {
	case set != 0 && set != 3:
		problems = append(problems, fmt.Errorf("tenant_id, app_id and app_secret go together (a client-secret credential): set all three, or none to use the default credential chain (environment, workload identity, managed identity)"))
	case set == 3 && c.UseMSI:
		problems = append(problems, fmt.Errorf("use_msi and the client-secret credential (tenant_id, app_id, app_secret) are both set: keep only one"))
	}
	if c.TenantID != "" && !validTenantID(c.TenantID) {
		problems = append(problems, fmt.Errorf("tenant_id %q is not a tenant ID: write the directory's GUID or a domain name such as contoso.onmicrosoft.com (letters, digits, '-' and '.')", c.TenantID))
	}
	switch p := strings.ToLower(strings.TrimSpace(c.KeyProtection)); p {
	case "":
		c.KeyProtection = protectionSoftware
		if v.kind == kindManagedHSM {
			c.KeyProtection = protectionHSM
		}
	case protectionSoftware:
		if v.kind == kindManagedHSM {
			problems = append(problems, fmt.Errorf("key_protection = \"software\" is not possible on a Managed HSM (%s): its keys are always HSM-protected; remove key_protection or set it to \"hsm\"", v.host))
		}
		c.KeyProtection = p
	case protectionHSM:
		c.KeyProtection = p
	default:
		problems = append(problems, fmt.Errorf("key_protection = %q is not valid: use \"software\" or \"hsm\" (HSM keys need a Premium vault or a Managed HSM)", c.KeyProtection))
	}
	if len(trustDomain) > maxTagLen {
		problems = append(problems, fmt.Errorf("the trust domain is %d characters long; the spire-server-td tag holds at most %d", len(trustDomain), maxTagLen))
	}
	if err := checkTags(c.KeyTags); err != nil {
		problems = append(problems, err)
	}
	if len(problems) == 0 {
		return nil
	}
	return problems
}

// validTenantID reports whether id is what Entra accepts as a tenant: a
// GUID or a domain name. azidentity refuses anything else when the
// credential is built; checking it here lets SPIRE's Validate say so too.
func validTenantID(id string) bool {
	for _, r := range id {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return id != ""
}

// checkTags checks key_tags against Key Vault's limits, counting the tags
// the plugin writes itself.
func checkTags(tags map[string]string) error {
	if n := len(tags); n > maxTags-ownTags {
		return fmt.Errorf("key_tags has %d tags; a Key Vault key holds at most %d and the plugin writes up to %d of its own, so at most %d are allowed", n, maxTags, ownTags, maxTags-ownTags)
	}
	names := make([]string, 0, len(tags))
	for k := range tags {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		v := tags[k]
		lk := strings.ToLower(k)
		switch {
		case strings.TrimSpace(k) == "":
			return fmt.Errorf("key_tags has an empty tag name")
		case strings.HasPrefix(lk, reservedPrefix) || strings.HasPrefix(lk, reservedPrefix2):
			return fmt.Errorf("key_tags: tag %q uses a reserved prefix (%q is the plugin's, %q is Azure's); rename it", k, reservedPrefix, reservedPrefix2)
		case len(k) > maxTagLen:
			return fmt.Errorf("key_tags: tag name %.40q... is %d characters long; Key Vault allows at most %d", k, len(k), maxTagLen)
		case len(v) > maxTagLen:
			return fmt.Errorf("key_tags: the value of tag %q is %d characters long; Key Vault allows at most %d", k, len(v), maxTagLen)
		}
	}
	return nil
}

// CheckServerID implements config.ServerIDChecker: the server ID is every
// key's spire-server-id tag, and must come back from the listing exactly as
// written (checkServerID).
func (c *Config) CheckServerID(serverID string) error {
	return checkServerID(serverID)
}

// Warnings implements config.Warner: use_msi is deprecated.
func (c *Config) Warnings() []string {
	if c.UseMSI {
		return []string{"use_msi is deprecated: without tenant_id, app_id and app_secret the default credential chain already uses the managed identity (after environment variables and workload identity); remove use_msi to allow those too"}
	}
	return nil
}

// Fixed implements config.Backend: the vault and who the plugin is to it.
// The credential is described without its secret.
func (c *Config) Fixed() string {
	return c.vault.url + " as " + c.identity()
}

// identity describes the credential, never its secret.
func (c *Config) identity() string {
	switch {
	case c.AppID != "":
		return fmt.Sprintf("app %s of tenant %s (client secret)", c.AppID, c.TenantID)
	case c.UseMSI:
		return "the managed identity"
	default:
		return chainIdentity(os.Getenv)
	}
}

// chainIdentity names what DefaultAzureCredential authenticates as, read
// from the environment variables it reads itself, so that an error names
// the app (a workload identity's client ID, say) rather than "the default
// credential chain". It only describes: azidentity decides. The chain tries
// the environment's secret or certificate first, then workload identity;
// AZURE_TOKEN_CREDENTIALS can leave either out. Anything else (a managed
// identity, developer tools) stays "the default credential chain".
func chainIdentity(getenv func(string) string) string {
	const chain = "the default credential chain"
	tenant, client := getenv("AZURE_TENANT_ID"), getenv("AZURE_CLIENT_ID")
	if tenant == "" || client == "" {
		return chain
	}
	only := strings.ToLower(getenv("AZURE_TOKEN_CREDENTIALS"))
	tries := func(credential string) bool {
		return only == "" || only == "prod" || only == strings.ToLower(credential)
	}
	app := fmt.Sprintf("app %s of tenant %s", client, tenant)
	switch {
	case tries("EnvironmentCredential") && getenv("AZURE_CLIENT_SECRET") == "" && getenv("AZURE_CLIENT_CERTIFICATE_PATH") == "" &&
		getenv("AZURE_USERNAME") != "" && getenv("AZURE_PASSWORD") != "":
		return chain // a user's password, deprecated; not described
	case tries("EnvironmentCredential") && getenv("AZURE_CLIENT_SECRET") != "":
		return app + " (client secret from AZURE_CLIENT_SECRET)"
	case tries("EnvironmentCredential") && getenv("AZURE_CLIENT_CERTIFICATE_PATH") != "":
		return app + " (client certificate " + getenv("AZURE_CLIENT_CERTIFICATE_PATH") + ")"
	case tries("WorkloadIdentityCredential") && getenv("AZURE_FEDERATED_TOKEN_FILE") != "":
		return app + " (workload identity, federated token file " + getenv("AZURE_FEDERATED_TOKEN_FILE") + ")"
	}
	return chain
}

// Open implements config.Backend: it builds the credential and Options, and
// calls New. No call reaches the vault until the engine lists it.
func (c *Config) Open(ctx context.Context, p config.OpenParams) (engine.Backend, error) {
	return c.open(ctx, p, network{})
}
