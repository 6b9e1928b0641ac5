package azurekv

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/internal/loopback"
)

// vaultKind says which product a vault URI names; it decides the default key
// protection and which roles an error message names.
type vaultKind int

const (
	// kindUnknown is a host the URI alone does not classify: the emulator on
	// loopback, or a custom private endpoint name.
	kindUnknown vaultKind = iota
	kindVault
	kindManagedHSM
)

func (k vaultKind) String() string {
	switch k {
	case kindVault:
		return "Key Vault"
	case kindManagedHSM:
		return "Managed HSM"
	}
	return "Key Vault or Managed HSM"
}

// dnsSuffix is one cloud's Key Vault and Managed HSM host suffixes.
type dnsSuffix struct {
	vault, managedHSM string
	cloud             cloud.Configuration
	name              string
}

// clouds lists the clouds whose hosts select their Entra authority: public,
// US Government and China (Azure CLI's cloud.py, azcore's cloud package).
// Private link names (<vault>.privatelink.vaultcore.azure.net) resolve as the
// public names do and need nothing more.
var clouds = []dnsSuffix{
	{".vault.azure.net", ".managedhsm.azure.net", cloud.AzurePublic, "AzurePublic"},
	{".vault.usgovcloudapi.net", ".managedhsm.usgovcloudapi.net", cloud.AzureGovernment, "AzureGovernment"},
	{".vault.azure.cn", ".managedhsm.azure.cn", cloud.AzureChina, "AzureChina"},
}

// vaultURI is a parsed and checked key_vault_uri.
type vaultURI struct {
	// url is the normalised URI: https://host[:port]/.
	url  string
	host string // without port, lower case
	kind vaultKind
	// cloudName is "" when the host names no known cloud (loopback, custom
	// private endpoints): the credential then uses azidentity's defaults,
	// including AZURE_AUTHORITY_HOST.
	cloudName string
	cloud     cloud.Configuration
	loopback  bool
}

// parseVaultURI checks key_vault_uri: https only, a host and nothing after
// the path's root. The built-in plugin accepted anything and failed at the
// first call; we say what is wrong before any call. A URI that carries user
// information or a query (a password, a SAS token's sig=) is refused before
// anything else, and no error repeats the URI but in config.RedactURL's form:
// url.Parse's own errors quote the whole URI, so they are not wrapped.
func parseVaultURI(raw string) (vaultURI, error) {
	const example = "https://my-vault.vault.azure.net/"
	trimmed := strings.TrimSpace(raw)
	if trimmed == "" {
		return vaultURI{}, fmt.Errorf("key_vault_uri is required: the vault or Managed HSM URI, such as %s", example)
	}
	shown := config.RedactURL(raw)
	if shown != raw {
		return vaultURI{}, fmt.Errorf("key_vault_uri %q carries credentials (user:password@), a query (?...) or a fragment (#...), which are not allowed and are not repeated here: write the vault's root URI, such as %s; the plugin authenticates with tenant_id, app_id and app_secret or the default credential chain, never with the URI", shown, example)
	}
	u, err := url.Parse(trimmed)
	if err != nil {
		return vaultURI{}, fmt.Errorf("key_vault_uri %q is not a URL: write it like %s", shown, example)
	}
	if !strings.EqualFold(u.Scheme, "https") {
		return vaultURI{}, fmt.Errorf("key_vault_uri %q must start with https:// (Key Vault serves only HTTPS, and tokens are never sent in the clear)", shown)
	}
	if u.Host == "" || u.Hostname() == "" {
		return vaultURI{}, fmt.Errorf("key_vault_uri %q has no host; write it like %s", shown, example)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return vaultURI{}, fmt.Errorf("key_vault_uri %q must be the vault's root URI with no path, query or credentials, such as %s", shown, example)
	}
	host := strings.ToLower(u.Hostname())
	v := vaultURI{url: "https://" + strings.ToLower(u.Host) + "/", host: host, loopback: loopback.Host(host)}
	for _, c := range clouds {
		switch {
		case strings.HasSuffix(host, c.vault):
			v.kind, v.cloud, v.cloudName = kindVault, c.cloud, c.name
		case strings.HasSuffix(host, c.managedHSM):
			v.kind, v.cloud, v.cloudName = kindManagedHSM, c.cloud, c.name
		}
	}
	if v.kind == kindUnknown {
		switch {
		case strings.HasSuffix(host, ".privatelink.vaultcore.azure.net"):
			v.kind = kindVault
		case strings.HasSuffix(host, ".privatelink.managedhsm.azure.net"):
			v.kind = kindManagedHSM
		}
	}
	return v, nil
}

// isLoopbackURL reports whether a URL (an authority host) points at loopback.
func isLoopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	return loopback.Host(u.Hostname())
}
