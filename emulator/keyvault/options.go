package keyvault

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// SKU names of a Key Vault. Premium vaults can hold HSM-protected keys
// (RSA-HSM, EC-HSM); Standard vaults refuse them like the service does.
const (
	SKUStandard = "standard"
	SKUPremium  = "premium"
)

// Defaults used when Options leaves a field empty. The IDs are fixed so that
// env files and configurations stay stable across runs; the secrets are
// random per start unless a data directory keeps them.
const (
	DefaultListen      = "127.0.0.1:0"
	DefaultVaultName   = "kmskeeper"
	DefaultTenantID    = "6b0c4ef1-7d2a-4c56-9e3f-2a5d8c1b0e01"
	DefaultClientID    = "0f3e9a52-8b1c-4d7e-a6f4-5c2b9d8e7a02"
	DefaultMSIClientID = "a41c7e90-3f5b-4e2d-8c1a-9b6d0e4f3a03"
	// DefaultDeletionDelay is how long a soft delete takes by default: a
	// few seconds, as observed on the service (Options.DeletionDelay).
	DefaultDeletionDelay = 5 * time.Second
)

// VaultSpec describes one Key Vault the emulator serves.
type VaultSpec struct {
	// Name is the vault name, the first label of <name>.vault.azure.net.
	Name string
	// SKU is SKUStandard or SKUPremium ("" means premium).
	SKU string
	// Listen optionally fixes the dedicated loopback address of this vault
	// (default: the Listen host with a free port).
	Listen string
	// RetentionDays is the soft-delete retention, 7 to 90 (default 90).
	RetentionDays int
	// PurgeProtection forbids purging deleted keys before their scheduled
	// purge date, like a vault with purge protection enabled.
	PurgeProtection bool
}

// FederatedCredential is a federated identity credential of an
// application, as created in Entra (az ad app federated-credential create,
// or on a user-assigned managed identity) for AKS workload identity: the
// cluster's OIDC issuer URL and the service account as
// system:serviceaccount:<namespace>:<name>. Its audience is always
// FederatedAudience.
type FederatedCredential struct {
	// ClientID is the application's client ID (default Options.ClientID).
	ClientID string
	// Issuer is the external token's iss, matched exactly: case and a
	// trailing slash count, as in Entra.
	Issuer string
	// Subject is the external token's sub, matched exactly.
	Subject string
}

// Options configures an emulator. The zero value serves one premium vault
// named "kmskeeper" on 127.0.0.1 with a free port.
type Options struct {
	// Listen is the main HTTPS address (Entra endpoints, admin API, host-name
	// routing, and the first vault). Default 127.0.0.1:0.
	Listen string
	// Vaults lists the Key Vaults to serve.
	Vaults []VaultSpec
	// ManagedHSMs lists the Managed HSM names to serve.
	ManagedHSMs []string
	// Hostnames are extra DNS names for the server certificate (for example
	// host.docker.internal); requests for them reach the first vault.
	Hostnames []string
	// DataDir keeps keys, the CA and the credentials across restarts; "" keeps
	// everything in memory.
	DataDir string
	// TenantID, ClientID and ClientSecret describe the directory and the
	// client-credentials application the token endpoint accepts.
	TenantID, ClientID, ClientSecret string
	// ExtraClients are further applications (client ID -> secret), for
	// example a restricted identity in permission tests.
	ExtraClients map[string]string
	// FederatedCredentials are the applications' federated identity
	// credentials (workload identity federation): the token endpoint gives a
	// token of ClientID for an external token of Issuer about Subject. An
	// application with federated credentials only (no secret) is registered
	// by them.
	FederatedCredentials []FederatedCredential
	// ManagedIdentityClientID is the client ID of the system-assigned
	// managed identity (default DefaultMSIClientID).
	ManagedIdentityClientID string
	// IdentityHeader is the secret the managed-identity endpoint expects in
	// X-IDENTITY-HEADER (default: random).
	IdentityHeader string
	// Roles restricts what a client may do: client ID -> allowed permissions
	// such as "keys/get", "keys/sign", "keys/delete", "keys/purge" ("keys/*"
	// or "*" allow all). Clients not listed, and every client when Roles is
	// nil, may do everything.
	Roles map[string][]string
	// MSIListen is the plain-HTTP address of the managed-identity endpoint
	// (default: the Listen host with a free port).
	MSIListen string
	// DeletionDelay is how long a soft delete takes, as on the service,
	// where it is asynchronous: for this long after DELETE /keys/{name}
	// answers 200, GET /deletedkeys/{name} answers 404 "Deleted Key not
	// found", the listing of deleted keys leaves the key out, and purge,
	// recover and re-creation answer 409 Conflict with inner code
	// ObjectIsBeingDeleted. Zero means DefaultDeletionDelay; a negative
	// value makes deletion instant (the deleted key is found and purgeable
	// at once), which is handy for tests that do not exercise the delay.
	// The delay runs on the emulator's clock, so Clock().Advance ends it.
	DeletionDelay time.Duration
	// ThrottleRetryAfter adds a Retry-After header (the seconds until the
	// window admits the request) to the throttler's 429 answers. The
	// service sends none: its 429 Throttled answers (inner code
	// VaultRequestTypeLimitReached) leave the client to back off on its
	// own, and so do the emulator's by default.
	ThrottleRetryAfter bool
	// FullPages fills every page of ListKeys and ListDeletedKeys with up to
	// maxresults items of that listing. By default pages are cut as the
	// service cuts them: its cursor walks over live and deleted names alike,
	// so a page can list fewer keys, or none ("value": []), and still carry a
	// nextLink.
	FullPages bool
	// Logf, when set, receives one line per request.
	Logf func(format string, args ...any)
}

var nameRE = regexp.MustCompile(`^[a-zA-Z][0-9a-zA-Z-]{1,22}[0-9a-zA-Z]$`)

// normalize fills defaults and checks the vault list.
func (o Options) normalize() (Options, error) {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.DeletionDelay == 0 {
		o.DeletionDelay = DefaultDeletionDelay
	}
	if len(o.Vaults) == 0 && len(o.ManagedHSMs) == 0 {
		o.Vaults = []VaultSpec{{Name: DefaultVaultName, SKU: SKUPremium}}
	}
	seen := map[string]bool{}
	vaults := make([]VaultSpec, 0, len(o.Vaults))
	for _, v := range o.Vaults {
		v.SKU = strings.ToLower(v.SKU)
		if v.SKU == "" {
			v.SKU = SKUPremium
		}
		if v.SKU != SKUStandard && v.SKU != SKUPremium {
			return o, fmt.Errorf("vault %q: unknown SKU %q (want standard or premium)", v.Name, v.SKU)
		}
		if v.RetentionDays == 0 {
			v.RetentionDays = 90
		}
		if v.RetentionDays < 7 || v.RetentionDays > 90 {
			return o, fmt.Errorf("vault %q: retention %d days is outside 7..90", v.Name, v.RetentionDays)
		}
		vaults = append(vaults, v)
	}
	o.Vaults = vaults
	for _, n := range append(vaultNames(o.Vaults), o.ManagedHSMs...) {
		if !nameRE.MatchString(n) {
			return o, fmt.Errorf("invalid vault name %q: 3-24 characters, letters, digits and hyphens, starting with a letter", n)
		}
		if seen[strings.ToLower(n)] {
			return o, fmt.Errorf("vault name %q given twice", n)
		}
		seen[strings.ToLower(n)] = true
	}
	if o.TenantID == "" {
		o.TenantID = DefaultTenantID
	}
	if o.ClientID == "" {
		o.ClientID = DefaultClientID
	}
	if o.ManagedIdentityClientID == "" {
		o.ManagedIdentityClientID = DefaultMSIClientID
	}
	fics := make([]FederatedCredential, 0, len(o.FederatedCredentials))
	perApp := map[string]int{}
	for i, f := range o.FederatedCredentials {
		if f.ClientID == "" {
			f.ClientID = o.ClientID
		}
		if f.Issuer == "" || f.Subject == "" {
			return o, fmt.Errorf("federated credential %d (app %s): issuer and subject are both required", i+1, f.ClientID)
		}
		perApp[lower(f.ClientID)]++
		if perApp[lower(f.ClientID)] > maxFederatedCredentials {
			return o, fmt.Errorf("app %s has more than %d federated credentials, Entra's limit", f.ClientID, maxFederatedCredentials)
		}
		fics = append(fics, f)
	}
	o.FederatedCredentials = fics
	return o, nil
}

func vaultNames(vs []VaultSpec) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}
