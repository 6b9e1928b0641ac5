package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
)

// startAzureDemo starts the Azure Key Vault emulator (one Premium vault) on
// loopback. The plugin reaches it as it would reach Azure: DefaultAzureCredential
// from the environment (a client secret issued by the emulator's Entra
// endpoints) and the emulator's CA through SSL_CERT_FILE.
func startAzureDemo(ctx context.Context, dir string) (*demoTarget, error) {
	srv, err := keyvault.Start(ctx, keyvault.Options{})
	if err != nil {
		return nil, err
	}
	_, envFile, err := srv.WriteFiles(dir)
	if err != nil {
		srv.Close()
		return nil, err
	}
	vault := srv.VaultURL(keyvault.DefaultVaultName)
	idFile := filepath.Join(dir, "server_id")
	client, err := srv.KeysClient(vault)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &demoTarget{
		name:       "azure_key_vault",
		where:      fmt.Sprintf("Azure Key Vault emulator, Premium vault %q at %s", keyvault.DefaultVaultName, vault),
		pluginData: fmt.Sprintf("key_vault_uri = %q\nkey_identifier_file = %q\n", vault, idFile),
		env:        srv.Env(),
		keys: func(ctx context.Context) ([]demoKeyRow, error) {
			return listAzureKeys(ctx, client)
		},
		listings: func() int { return srv.Counts()["ListKeys"] },
		advance:  srv.Clock().Advance,
		snippet: func(pluginPath, checksum string) string {
			return fmt.Sprintf(`    KeyManager "azure_key_vault" {
        plugin_cmd      = %q
        plugin_checksum = %q
        plugin_data {
            key_vault_uri       = %q
            key_identifier_file = %q
        }
    }

Start the SPIRE server with the emulator's environment (CA, authority and an
app's client secret for DefaultAzureCredential):

    set -a; . %s; set +a
`, pluginPath, checksum, vault, idFile, envFile)
		},
		close: func() { srv.Close() },
	}, nil
}

// listAzureKeys lists the vault's live keys with their tags.
func listAzureKeys(ctx context.Context, client *azkeys.Client) ([]demoKeyRow, error) {
	var rows []demoKeyRow
	pager := client.NewListKeyPropertiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the vault: %w", err)
		}
		for _, k := range page.Value {
			if k == nil || k.KID == nil {
				continue
			}
			r := demoKeyRow{name: k.KID.Name(), state: "enabled", tags: map[string]string{}}
			if k.Attributes != nil && k.Attributes.Enabled != nil && !*k.Attributes.Enabled {
				r.state = "disabled"
			}
			for n, v := range k.Tags {
				if v != nil {
					r.tags[n] = *v
				}
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}
