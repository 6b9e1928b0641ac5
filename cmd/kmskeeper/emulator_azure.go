package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// azureEmulatorConfig is the parsed command line of `emulator azure`.
type azureEmulatorConfig struct {
	opts        keyvault.Options
	caFile      string
	envFile     string
	throttling  bool
	logRequests bool
	keyIDValue  string
	// federatedTokenFile is where the token for the main app's first
	// federated credential is kept fresh ("" when it has none).
	federatedTokenFile string
}

// azureFlagValues holds the flags that parseAzureEmulatorFlags turns into
// options after parsing.
type azureFlagValues struct {
	vaults, hsms, hostnames listFlag
	roles, clients, fics    listFlag
	retention               int
	purgeProtection         bool
	deletionDelay           time.Duration
}

// newEmulatorAzureFlagSet declares every flag of `emulator azure`, storing
// into cfg and v, with the usage text --help prints.
func newEmulatorAzureFlagSet(cfg *azureEmulatorConfig, v *azureFlagValues) *flag.FlagSet {
	fs := flag.NewFlagSet("emulator azure", flag.ContinueOnError)
	fs.StringVar(&cfg.opts.Listen, "listen", "127.0.0.1:8443", "HTTPS `address` of the main port: Entra token endpoints, admin API (/_emulator/), host-name routing and the first vault (port 0 picks a free port)")
	fs.Var(&v.vaults, "vault", "serve a Key Vault: `name[:standard|premium][@host:port]` (repeatable; default one premium vault \"kmskeeper\"); vaults after the first get their own port unless @host:port fixes it")
	fs.Var(&v.hsms, "managed-hsm", "serve a Managed HSM `name` on its own port (repeatable)")
	fs.Var(&v.hostnames, "hostname", "extra DNS `name` or IP for the TLS certificate, e.g. host.docker.internal (repeatable); requests for it reach the first vault")
	fs.StringVar(&cfg.opts.DataDir, "data-dir", "", "`directory` that keeps keys, the CA and the credentials across restarts (default: memory only)")
	fs.StringVar(&cfg.caFile, "ca-file", "", "write the CA certificate (PEM) to this `file` (default: ca.pem in --data-dir, else in a new temporary directory)")
	fs.StringVar(&cfg.envFile, "env-file", "", "write the client environment (SSL_CERT_FILE, AZURE_*, IDENTITY_*) to this `file` (default: azure.env next to the CA file)")
	fs.Var(&v.roles, "role", "restrict a client: `clientid=perm,perm` with permissions like keys/get, keys/sign, keys/create, keys/delete, keys/purge, keys/* (repeatable; unlisted clients may do everything)")
	fs.Var(&v.clients, "client", "accept another client-credentials app: `clientid=secret` (repeatable)")
	fs.Var(&v.fics, "federated-credential", "trust an identity provider's tokens for an app (workload identity federation): `[client=id,]issuer=url,subject=sub` (repeatable; client defaults to --client-id). For the main app's first one, a token is kept in federated-token next to the env file (AZURE_FEDERATED_TOKEN_FILE), renewed every 48 minutes")
	fs.StringVar(&cfg.opts.TenantID, "tenant-id", keyvault.DefaultTenantID, "directory (tenant) `ID`")
	fs.StringVar(&cfg.opts.ClientID, "client-id", keyvault.DefaultClientID, "client `ID` of the main client-credentials app")
	fs.StringVar(&cfg.opts.ClientSecret, "client-secret", "", "`secret` of the main app (default: random, kept in --data-dir)")
	fs.StringVar(&cfg.opts.ManagedIdentityClientID, "managed-identity-client-id", keyvault.DefaultMSIClientID, "client `ID` of the managed identity served at IDENTITY_ENDPOINT")
	fs.StringVar(&cfg.opts.MSIListen, "msi-listen", "", "plain-HTTP `address` of the managed-identity endpoint and admin API (default: the --listen host, free port)")
	fs.IntVar(&v.retention, "retention-days", 90, "soft-delete retention of the vaults, 7 to 90 `days`")
	fs.BoolVar(&v.purgeProtection, "purge-protection", false, "enable purge protection on the vaults (purge is refused until the retention ends)")
	fs.DurationVar(&v.deletionDelay, "deletion-delay", keyvault.DefaultDeletionDelay, "how long a soft delete takes, as on the service: meanwhile the deleted key is not found (404) and purge, recover and re-creation answer 409 ObjectIsBeingDeleted (0: instant)")
	fs.BoolVar(&cfg.throttling, "throttling", false, "enforce the published per-vault limits (weighted 10-second windows; 429 Throttled, inner code VaultRequestTypeLimitReached, without Retry-After as the service answers)")
	fs.BoolVar(&cfg.opts.FullPages, "full-pages", false, "fill every listing page with up to 25 keys (the service's cursor also walks over deleted names, so its pages can be empty with a nextLink)")
	fs.BoolVar(&cfg.opts.ThrottleRetryAfter, "throttle-retry-after", false, "add a Retry-After header to the throttler's 429 answers (the service sends none)")
	fs.BoolVar(&cfg.logRequests, "log-requests", false, "log every request to stderr")
	fs.StringVar(&cfg.keyIDValue, "key-identifier", "kmskeeper-emulator", "key_identifier_value `value` shown in the SPIRE plugin_data snippet")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: kmskeeper emulator azure [flags]

Runs a local Azure Key Vault / Managed HSM with Entra ID token endpoints over
HTTPS, for development and CI. The official Azure SDKs work against it
unmodified once they trust its CA (SSL_CERT_FILE from the env file).

Load the env file in the client's shell:   set -a; . ./azure.env; set +a
Admin API (faults, clock, counters):        https://<listen>/_emulator/

It answers as the service does where the service is awkward: a soft delete
takes a few seconds (--deletion-delay; meanwhile the deleted key is not found
and its purge answers 409 ObjectIsBeingDeleted); throttled requests get 429
Throttled without Retry-After (--throttle-retry-after adds it); listing pages
can be empty and still carry a nextLink (--full-pages fills them); a disabled
key is still read and still verifies, encrypts and wraps, but does not sign,
decrypt or unwrap; only the published api-versions are accepted (a vault
from 7.0, a Managed HSM from 7.2 and not the newest preview).

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

// parseAzureEmulatorFlags turns the command line into emulator options.
func parseAzureEmulatorFlags(args []string, stderr io.Writer) (azureEmulatorConfig, error) {
	var (
		cfg azureEmulatorConfig
		v   azureFlagValues
	)
	fs := newEmulatorAzureFlagSet(&cfg, &v)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, usageError{fmt.Sprintf("emulator azure: unexpected argument %q", fs.Arg(0))}
	}
	for _, arg := range v.vaults {
		spec := keyvault.VaultSpec{RetentionDays: v.retention, PurgeProtection: v.purgeProtection}
		rest, listen, hasListen := strings.Cut(arg, "@")
		if hasListen {
			spec.Listen = listen
		}
		spec.Name, spec.SKU, _ = strings.Cut(rest, ":")
		cfg.opts.Vaults = append(cfg.opts.Vaults, spec)
	}
	if len(v.vaults) == 0 && len(v.hsms) == 0 && (v.retention != 90 || v.purgeProtection) {
		cfg.opts.Vaults = []keyvault.VaultSpec{{Name: keyvault.DefaultVaultName, SKU: keyvault.SKUPremium, RetentionDays: v.retention, PurgeProtection: v.purgeProtection}}
	}
	cfg.opts.DeletionDelay = v.deletionDelay
	if v.deletionDelay <= 0 {
		cfg.opts.DeletionDelay = -1 // instant
	}
	cfg.opts.ManagedHSMs = v.hsms
	cfg.opts.Hostnames = v.hostnames
	for _, r := range v.roles {
		id, perms, ok := strings.Cut(r, "=")
		if !ok || id == "" {
			return cfg, usageError{fmt.Sprintf("emulator azure: --role %q: want clientid=perm,perm", r)}
		}
		if cfg.opts.Roles == nil {
			cfg.opts.Roles = map[string][]string{}
		}
		var list []string
		for _, p := range strings.Split(perms, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		cfg.opts.Roles[id] = append(cfg.opts.Roles[id], list...)
	}
	for _, c := range v.clients {
		id, secret, ok := strings.Cut(c, "=")
		if !ok || id == "" || secret == "" {
			return cfg, usageError{fmt.Sprintf("emulator azure: --client %q: want clientid=secret", c)}
		}
		if cfg.opts.ExtraClients == nil {
			cfg.opts.ExtraClients = map[string]string{}
		}
		cfg.opts.ExtraClients[id] = secret
	}
	for _, f := range v.fics {
		fic, err := parseFederatedCredential(f)
		if err != nil {
			return cfg, usageError{fmt.Sprintf("emulator azure: --federated-credential %q: %v", f, err)}
		}
		cfg.opts.FederatedCredentials = append(cfg.opts.FederatedCredentials, fic)
	}
	return cfg, nil
}

// parseFederatedCredential reads client=...,issuer=...,subject=... (client
// optional). Issuer URLs and Kubernetes or CI subjects hold no commas.
func parseFederatedCredential(v string) (keyvault.FederatedCredential, error) {
	var f keyvault.FederatedCredential
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		switch {
		case !ok:
			return f, fmt.Errorf("%q is not key=value", part)
		case k == "client":
			f.ClientID = val
		case k == "issuer":
			f.Issuer = val
		case k == "subject":
			f.Subject = val
		default:
			return f, fmt.Errorf("unknown key %q (want client, issuer, subject)", k)
		}
	}
	if f.Issuer == "" || f.Subject == "" {
		return f, fmt.Errorf("issuer and subject are both required")
	}
	return f, nil
}

// mainFederatedCredential returns the first federated credential of the
// main app, the one the env file's AZURE_CLIENT_ID names.
func mainFederatedCredential(srv *keyvault.Server, fics []keyvault.FederatedCredential) (keyvault.FederatedCredential, bool) {
	for _, f := range fics {
		if f.ClientID == "" || strings.EqualFold(f.ClientID, srv.ClientID()) {
			return f, true
		}
	}
	return keyvault.FederatedCredential{}, false
}

// runEmulatorAzure serves the Azure Key Vault emulator until ctx ends.
func runEmulatorAzure(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseAzureEmulatorFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		var ue usageError
		if errors.As(err, &ue) {
			return err
		}
		return usageError{err.Error()}
	}
	if cfg.logRequests {
		cfg.opts.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	srv, err := keyvault.Start(ctx, cfg.opts)
	if err != nil {
		return fmt.Errorf("emulator azure: %w", err)
	}
	defer srv.Close()
	srv.SetThrottling(cfg.throttling)

	dir := cfg.opts.DataDir
	if cfg.caFile == "" {
		if dir == "" {
			if dir, err = os.MkdirTemp("", "kmskeeper-azurekv-"); err != nil {
				return fmt.Errorf("emulator azure: %w", err)
			}
		}
		cfg.caFile = filepath.Join(dir, "ca.pem")
	}
	if cfg.envFile == "" {
		cfg.envFile = filepath.Join(filepath.Dir(cfg.caFile), "azure.env")
	}
	if err := srv.WriteCAFile(cfg.caFile); err != nil {
		return fmt.Errorf("emulator azure: %w", err)
	}
	if fic, ok := mainFederatedCredential(srv, cfg.opts.FederatedCredentials); ok {
		// Written before the env file, which then names it.
		cfg.federatedTokenFile = filepath.Join(filepath.Dir(cfg.envFile), "federated-token")
		if err := srv.WriteFederatedTokenFile(cfg.federatedTokenFile, fic.Subject); err != nil {
			return fmt.Errorf("emulator azure: %w", err)
		}
		go renewFederatedToken(ctx, srv, cfg.federatedTokenFile, fic.Subject, stderr)
	}
	if err := srv.WriteEnvFile(cfg.envFile); err != nil {
		return fmt.Errorf("emulator azure: %w", err)
	}
	printAzureBanner(stdout, srv, cfg)
	<-ctx.Done()
	fmt.Fprintln(stdout, "emulator azure: stopping")
	return srv.Close()
}

// renewFederatedToken rewrites the federated token file before the token
// expires, as the kubelet renews a projected service account token, until
// ctx ends.
func renewFederatedToken(ctx context.Context, srv *keyvault.Server, path, subject string, stderr io.Writer) {
	t := time.NewTicker(keyvault.FederatedTokenRenewal)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := srv.WriteFederatedTokenFile(path, subject); err != nil {
				fmt.Fprintf(stderr, "emulator azure: renewing the federated token: %v\n", err)
			}
		}
	}
}

func printAzureBanner(w io.Writer, srv *keyvault.Server, cfg azureEmulatorConfig) {
	fmt.Fprintf(w, "Azure Key Vault emulator listening on %s\n", srv.URL())
	for _, name := range srv.Vaults() {
		kind := "vault      "
		if srv.IsManagedHSM(name) {
			kind = "managed HSM"
		}
		fmt.Fprintf(w, "  %s %-24s %s   (or %s via DNS)\n", kind, name, srv.VaultURL(name), srv.HostVaultURL(name))
	}
	fmt.Fprintf(w, "  authority   %s  tenant %s\n", srv.AuthorityHost(), srv.TenantID())
	fmt.Fprintf(w, "  app         client_id %s (secret in the env file)\n", srv.ClientID())
	for _, f := range cfg.opts.FederatedCredentials {
		id := f.ClientID
		if id == "" {
			id = srv.ClientID()
		}
		fmt.Fprintf(w, "  federated   app %s trusts issuer %s subject %s\n", id, f.Issuer, f.Subject)
	}
	if cfg.federatedTokenFile != "" {
		fmt.Fprintf(w, "  token file  %s (AZURE_FEDERATED_TOKEN_FILE; without AZURE_CLIENT_SECRET the default chain uses it)\n", cfg.federatedTokenFile)
	}
	fmt.Fprintf(w, "  identity    %s (managed identity %s)\n", srv.MSIURL(), srv.ManagedIdentityClientID())
	fmt.Fprintf(w, "  admin API   %s_emulator/  (faults, clock, counts, throttling)\n", srv.URL())
	fmt.Fprintf(w, "CA certificate: %s\nEnv file:       %s\n", cfg.caFile, cfg.envFile)
	fmt.Fprintf(w, "Load it where the client runs:  set -a; . %s; set +a\n\n", cfg.envFile)
	first := srv.Vaults()[0]
	fmt.Fprintf(w, `SPIRE server KeyManager (credentials come from the env file):
    KeyManager "kmskeeper" {
        plugin_cmd = "kmskeeper"
        plugin_data {
            key_vault_uri = "%s"
            key_identifier_value = "%s"
        }
    }

Ready. Press Ctrl-C to stop.
`, srv.VaultURL(first), cfg.keyIDValue)
}
