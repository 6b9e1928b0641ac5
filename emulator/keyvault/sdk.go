package keyvault

import (
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// KeysClient returns the official azkeys client for vaultURL (one of
// VaultURL's answers), authenticated with the emulator's app and secret and
// trusting its CA and authority: how a Go test or tool looks at the vault
// from outside the code under test. Only two settings differ from a client
// of the real service, both for loopback: instance discovery is off (the
// authority is the emulator) and the challenge resource is not compared
// with the vault's host (an IP address).
func (s *Server) KeysClient(vaultURL string) (*azkeys.Client, error) {
	o := azcore.ClientOptions{
		Transport: s.HTTPClient(),
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: s.AuthorityHost()},
	}
	cred, err := azidentity.NewClientSecretCredential(s.TenantID(), s.ClientID(), s.ClientSecret(), &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            o,
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return nil, err
	}
	return azkeys.NewClient(vaultURL, cred, &azkeys.ClientOptions{ClientOptions: o, DisableChallengeResourceVerification: true})
}
