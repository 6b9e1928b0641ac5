package keyvault

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Env returns the KEY=value lines a client process needs to reach the
// emulator with DefaultAzureCredential (client secret) or
// ManagedIdentityCredential (App Service style): SSL_CERT_FILE (only once a
// CA file was written with WriteCAFile or WriteFiles, since Go reads the CA
// from a file), AZURE_AUTHORITY_HOST, AZURE_TENANT_ID, AZURE_CLIENT_ID,
// AZURE_CLIENT_SECRET, IDENTITY_ENDPOINT, IDENTITY_HEADER, plus
// AZURE_KEYVAULT_URL / AZURE_MANAGEDHSM_URL for the first vault and HSM and
// KMSKEEPER_AZUREKV_ADMIN_URL for the admin API.
//
// Once WriteFederatedTokenFile wrote a token, AZURE_FEDERATED_TOKEN_FILE
// names it too. DefaultAzureCredential prefers AZURE_CLIENT_SECRET, so a
// client that should use workload identity leaves the secret out (or sets
// AZURE_TOKEN_CREDENTIALS=WorkloadIdentityCredential).
func (s *Server) Env() []string {
	var out []string
	s.persistMu.Lock()
	ca, fedFile := s.caFile, s.federatedTokenFile
	s.persistMu.Unlock()
	if ca != "" {
		out = append(out, "SSL_CERT_FILE="+ca)
	}
	out = append(out,
		"AZURE_AUTHORITY_HOST="+s.AuthorityHost(),
		"AZURE_TENANT_ID="+s.TenantID(),
		"AZURE_CLIENT_ID="+s.ClientID(),
		"AZURE_CLIENT_SECRET="+s.ClientSecret(),
	)
	if fedFile != "" {
		out = append(out, "AZURE_FEDERATED_TOKEN_FILE="+fedFile)
	}
	out = append(out,
		"IDENTITY_ENDPOINT="+s.MSIURL(),
		"IDENTITY_HEADER="+s.IdentityHeader(),
	)
	vaultDone, hsmDone := false, false
	for _, v := range s.vaults {
		switch {
		case !v.managedHSM && !vaultDone:
			out = append(out, "AZURE_KEYVAULT_URL="+s.VaultURL(v.name))
			vaultDone = true
		case v.managedHSM && !hsmDone:
			out = append(out, "AZURE_MANAGEDHSM_URL="+s.VaultURL(v.name))
			hsmDone = true
		}
	}
	out = append(out, "KMSKEEPER_AZUREKV_ADMIN_URL="+s.mainURL+strings.TrimPrefix(adminPrefix, "/"))
	return out
}

// WriteCAFile writes the CA certificate (PEM) to path and remembers it for
// SSL_CERT_FILE in Env.
func (s *Server) WriteCAFile(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("ca file: %w", err)
	}
	if err := writeFileAtomic(abs, s.CAPEM(), 0o644); err != nil {
		return err
	}
	s.persistMu.Lock()
	s.caFile = abs
	s.persistMu.Unlock()
	return nil
}

// WriteEnvFile writes Env as a file that `set -a; . file; set +a` (or
// docker --env-file, or systemd EnvironmentFile) loads. It holds the
// client secret, so it is written with mode 0600.
func (s *Server) WriteEnvFile(path string) error {
	var b strings.Builder
	b.WriteString("# kmskeeper Azure Key Vault emulator; load with: set -a; . " + path + "; set +a\n")
	for _, l := range s.Env() {
		b.WriteString(l + "\n")
	}
	return writeFileAtomic(path, []byte(b.String()), 0o600)
}

// WriteFiles writes dir/ca.pem and dir/azure.env and returns their paths.
func (s *Server) WriteFiles(dir string) (caFile, envFile string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("write files: %w", err)
	}
	caFile, envFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "azure.env")
	if err := s.WriteCAFile(caFile); err != nil {
		return "", "", err
	}
	if err := s.WriteEnvFile(envFile); err != nil {
		return "", "", err
	}
	if caFile, err = filepath.Abs(caFile); err != nil {
		return "", "", fmt.Errorf("write files: %w", err)
	}
	return caFile, envFile, nil
}
