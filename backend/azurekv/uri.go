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
var clouds = []dnsSuffix{
	{".vault.azure.net", ".managedhsm.azure.net", cloud.AzurePublic, "AzurePublic"},
	{".vault.usgovcloudapi.net", ".managedhsm.usgovcloudapi.net", cloud.AzureGovernment, "AzureGovernment"},
	{".vault.azure.cn", ".managedhsm.azure.cn", cloud.AzureChina, "AzureChina"},
}

// privateLinkZones maps the private DNS zones of Key Vault and Managed HSM
// private endpoints to the names clients keep using. A client never names
// the privatelink alias: the service's challenge names the resource
// https://vault.azure.net (or managedhsm.azure.net, or the sovereign
// clouds'), and azkeys refuses a challenge whose resource is not a suffix of
// the request's host, so every call would fail. The normal name resolves to
// the private endpoint through the private DNS zone's CNAME.
var privateLinkZones = []struct{ zone, public string }{
	{".privatelink.vaultcore.azure.net", ".vault.azure.net"},
	{".privatelink.vaultcore.usgovcloudapi.net", ".vault.usgovcloudapi.net"},
	{".privatelink.vaultcore.azure.cn", ".vault.azure.cn"},
	{".privatelink.managedhsm.azure.net", ".managedhsm.azure.net"},
	{".privatelink.managedhsm.usgovcloudapi.net", ".managedhsm.usgovcloudapi.net"},
	{".privatelink.managedhsm.azure.cn", ".managedhsm.azure.cn"},
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
	for _, z := range privateLinkZones {
		if name, ok := strings.CutSuffix(host, z.zone); ok {
			return vaultURI{}, fmt.Errorf("key_vault_uri %q names the private link alias of %s: write https://%s%s/ instead. With a private endpoint the plugin keeps the vault's usual name, which the private DNS zone resolves to the endpoint's private address; the vault's authentication challenge names the resource of the usual name, and the Azure SDK refuses it for any other host, so every call through the alias would fail", shown, name, name, z.public)
		}
	}
	v := vaultURI{url: "https://" + strings.ToLower(u.Host) + "/", host: host, loopback: loopback.Host(host)}
	for _, c := range clouds {
		switch {
		case strings.HasSuffix(host, c.vault):
			v.kind, v.cloud, v.cloudName = kindVault, c.cloud, c.name
		case strings.HasSuffix(host, c.managedHSM):
			v.kind, v.cloud, v.cloudName = kindManagedHSM, c.cloud, c.name
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
