package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
)

// defaultGCPKeyRing is the key ring the gcp emulator creates when no
// --key-ring is given, so `kmskeeper emulator gcp` alone is usable.
const defaultGCPKeyRing = "projects/kmskeeper-emulator/locations/global/keyRings/spire"

// repeatedFlag collects a flag given several times.
type repeatedFlag []string

func (r *repeatedFlag) String() string     { return strings.Join(*r, ",") }
func (r *repeatedFlag) Set(v string) error { *r = append(*r, v); return nil }

// gcpEmulatorConfig is the parsed command line of `kmskeeper emulator gcp`.
type gcpEmulatorConfig struct {
	opts            cloudkms.Options
	caFile          string
	envFile         string
	credentialsDir  string
	serviceAccounts []string // emails, in flag order
	quiet           bool
}

// gcpFlagValues holds the flags that parseEmulatorGCPFlags turns into
// options after parsing.
type gcpFlagValues struct {
	keyRings, hostnames, serviceAccounts, disabledProjects repeatedFlag
	logRequests                                            bool
	quotaModel                                             string
}

// newEmulatorGCPFlagSet declares every flag of `emulator gcp`, storing into
// cfg and v, with the usage text --help prints.
func newEmulatorGCPFlagSet(cfg *gcpEmulatorConfig, v *gcpFlagValues) *flag.FlagSet {
	fs := flag.NewFlagSet("emulator gcp", flag.ContinueOnError)
	fs.StringVar(&cfg.opts.Listen, "listen", "127.0.0.1:9010", "gRPC `address` to serve Cloud KMS on (port 0 picks a free port)")
	fs.BoolVar(&cfg.opts.TLS, "tls", false, "serve gRPC over TLS with a generated CA (see --ca-file); needed by clients that refuse plaintext")
	fs.Var(&v.hostnames, "hostname", "extra DNS `name` or IP for the TLS server certificate (repeatable); 127.0.0.1, ::1, localhost and cloudkms.googleapis.com are always included")
	fs.Var(&v.keyRings, "key-ring", "key ring to create at start, projects/P/locations/L/keyRings/R (repeatable; default "+defaultGCPKeyRing+")")
	fs.BoolVar(&cfg.opts.AutoCreateKeyRings, "auto-create-key-rings", false, "let CreateCryptoKey create a missing key ring instead of answering NOT_FOUND like the service")
	fs.DurationVar(&cfg.opts.PendingGeneration, "pending-generation", 0, "how long new key versions stay PENDING_GENERATION, e.g. 500ms (0s: ENABLED at once)")
	fs.DurationVar(&cfg.opts.PendingGenerationHSM, "pending-generation-hsm", 0, "PENDING_GENERATION time for HSM keys (0s: same as --pending-generation)")
	fs.StringVar(&cfg.opts.DataDir, "data-dir", "", "`directory` that keeps keys, IAM policies, service accounts and the CA across restarts (default: in memory only)")
	fs.StringVar(&cfg.caFile, "ca-file", "", "write the CA certificate (PEM) to this `file` (requires --tls)")
	fs.StringVar(&cfg.envFile, "env-file", "", "write the client settings (endpoint, CA, credentials, admin URL) as KEY=value lines to this `file`")
	fs.Var(&v.serviceAccounts, "service-account", "create a service account and write its JSON key file; `email[=perm,...]` grants permissions or roles (default: all). Turns on identity and permission checks (repeatable)")
	fs.StringVar(&cfg.credentialsDir, "credentials-dir", "", "`directory` for service account key files (default: --data-dir, else a new temporary directory)")
	fs.StringVar(&cfg.opts.TokenListen, "token-listen", "127.0.0.1:0", "`address` of the OAuth2 token and tokeninfo endpoint (plain HTTP, loopback)")
	fs.StringVar(&cfg.opts.AdminListen, "admin-listen", "", "serve the admin API (faults, clock, counters, quotas) on this `address`, e.g. 127.0.0.1:9011 (unauthenticated: keep it on loopback)")
	fs.BoolVar(&cfg.opts.Quotas, "quotas", false, "count requests against the published quotas (300 read, 60 write, 60000 crypto a minute; HSM requests per second) as --quota-model says")
	fs.StringVar(&v.quotaModel, "quota-model", string(cloudkms.QuotaRegional), "`model` of --quotas: regional (the service's since 2026: per location, HSM per second, requests over a limit refused only while the admin API marks the service overloaded) or per-minute (the superseded project-wide regime, always refused)")
	fs.BoolVar(&cfg.opts.AllowUnknownMembers, "allow-unknown-members", false, "let SetIamPolicy accept serviceAccount members the emulator does not know (by default, with --service-account, a policy naming another account is INVALID_ARGUMENT \"Service account ... does not exist.\", as on the service)")
	fs.Var(&v.disabledProjects, "disabled-project", "`project` whose Cloud KMS API is not enabled: its calls are PERMISSION_DENIED with reason SERVICE_DISABLED (repeatable; the admin API turns it on and off)")
	fs.BoolVar(&v.logRequests, "log", false, "log every request to stderr")
	fs.BoolVar(&cfg.quiet, "quiet", false, "print only the endpoint line at start")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, `Usage: kmskeeper emulator gcp [flags]

Runs a local Google Cloud KMS (google.cloud.kms.v1.KeyManagementService and
google.iam.v1.IAMPolicy over gRPC) for development and CI. The official
cloud.google.com/go/kms client works against it unmodified.

Clients reach it with option.WithEndpoint(<listen address>) and either
  plaintext (default): insecure gRPC transport credentials and no auth, or
  --tls: the CA from --ca-file (SSL_CERT_FILE=<ca-file> makes Go trust it).
With --service-account, callers authenticate with the written key file
(GOOGLE_APPLICATION_CREDENTIALS) and need the granted permissions.

With --tls the one listen port also answers HTTP requests for the OAuth2
token endpoint and tokeninfo, and the certificate names
cloudkms.googleapis.com, oauth2.googleapis.com and www.googleapis.com. An
unmodified client (SPIRE's built-in gcp_kms, or kmskeeper with no endpoint)
then works with hosts entries sending those names to this host, the
emulator listening on port 443 (--listen 127.0.0.1:443) and SSL_CERT_FILE
set to --ca-file. docs/gcp.md describes the set-up.

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

// parseEmulatorGCPFlags parses args; it returns flag.ErrHelp for --help.
func parseEmulatorGCPFlags(args []string, stdout, stderr io.Writer) (*gcpEmulatorConfig, error) {
	var (
		cfg gcpEmulatorConfig
		v   gcpFlagValues
	)
	fs := newEmulatorGCPFlagSet(&cfg, &v)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(stdout)
			fs.Usage()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("emulator gcp: unexpected argument %q", fs.Arg(0))}
	}
	if cfg.caFile != "" && !cfg.opts.TLS {
		return nil, usageError{"emulator gcp: --ca-file needs --tls"}
	}
	if len(v.keyRings) == 0 {
		v.keyRings = repeatedFlag{defaultGCPKeyRing}
	}
	model, err := cloudkms.ParseQuotaModel(v.quotaModel)
	if err != nil {
		return nil, usageError{"emulator gcp: --quota-model: " + err.Error()}
	}
	cfg.opts.QuotaModel = model
	cfg.opts.DisabledProjects = v.disabledProjects
	cfg.opts.KeyRings = v.keyRings
	cfg.opts.Hostnames = v.hostnames
	for _, sa := range v.serviceAccounts {
		email, perms, hasPerms := strings.Cut(sa, "=")
		if !strings.Contains(email, "@") {
			return nil, usageError{fmt.Sprintf("emulator gcp: --service-account %q: want an email, optionally =perm,...", sa)}
		}
		grants := []string{"*"}
		if hasPerms {
			grants = strings.Split(perms, ",")
		}
		if cfg.opts.Principals == nil {
			cfg.opts.Principals = map[string][]string{}
		}
		cfg.opts.Principals[email] = grants
		cfg.serviceAccounts = append(cfg.serviceAccounts, email)
	}
	if v.logRequests {
		cfg.opts.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	}
	return &cfg, nil
}

func runEmulatorGCP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseEmulatorGCPFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	srv, err := cloudkms.Start(ctx, cfg.opts)
	if err != nil {
		return fmt.Errorf("emulator gcp: %w", err)
	}
	defer srv.Close()

	if cfg.caFile != "" {
		if err := srv.WriteCAFile(cfg.caFile); err != nil {
			return fmt.Errorf("emulator gcp: %w", err)
		}
	}
	var saFiles []string
	if len(cfg.serviceAccounts) > 0 {
		dir := cfg.credentialsDir
		if dir == "" {
			dir = cfg.opts.DataDir
		}
		if dir == "" {
			if dir, err = os.MkdirTemp("", "kmskeeper-gcp-emulator-"); err != nil {
				return fmt.Errorf("emulator gcp: credentials dir: %w", err)
			}
		}
		for _, email := range cfg.serviceAccounts {
			p := filepath.Join(dir, strings.ReplaceAll(email, "@", "_at_")+".json")
			if err := srv.WriteServiceAccountFile(email, p); err != nil {
				return fmt.Errorf("emulator gcp: %w", err)
			}
			saFiles = append(saFiles, p)
		}
	}
	if cfg.envFile != "" {
		if err := srv.WriteEnvFile(cfg.envFile); err != nil {
			return fmt.Errorf("emulator gcp: %w", err)
		}
	}
	printGCPEmulatorBanner(stdout, srv, cfg, saFiles)
	<-ctx.Done()
	return srv.Close()
}

func printGCPEmulatorBanner(w io.Writer, srv *cloudkms.Server, cfg *gcpEmulatorConfig, saFiles []string) {
	mode := "plaintext"
	if cfg.opts.TLS {
		mode = "TLS"
	}
	fmt.Fprintf(w, "Cloud KMS emulator listening on %s (%s)\n", srv.Addr(), mode)
	if cfg.quiet {
		return
	}
	fmt.Fprintf(w, "key rings: %s\n", strings.Join(cfg.opts.KeyRings, ", "))
	fmt.Fprintf(w, "token endpoint: %s\n", srv.TokenURL())
	if cfg.opts.TLS {
		fmt.Fprintf(w, "token and tokeninfo also on https://%s (certificate for cloudkms.googleapis.com, oauth2.googleapis.com, www.googleapis.com)\n", srv.Addr())
	}
	if u := srv.AdminURL(); u != "" {
		fmt.Fprintf(w, "admin API: %s/v1/ (counts, faults, clock, quotas)\n", u)
	}
	fmt.Fprintln(w, "\nGo client (cloud.google.com/go/kms/apiv1):")
	fmt.Fprintf(w, "  kms.NewKeyManagementClient(ctx, option.WithEndpoint(%q),\n", srv.Addr())
	if cfg.opts.TLS {
		fmt.Fprintln(w, "    option.WithGRPCDialOption(grpc.WithTransportCredentials(credentials.NewClientTLSFromFile(<ca-file>, \"\"))),")
	} else {
		fmt.Fprintln(w, "    option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),")
	}
	if len(saFiles) > 0 {
		fmt.Fprintf(w, "    option.WithAuthCredentialsFile(option.ServiceAccount, %q))\n", saFiles[0])
	} else {
		fmt.Fprintln(w, "    option.WithoutAuthentication())")
	}
	for i, f := range saFiles {
		fmt.Fprintf(w, "service account %s: %s\n", cfg.serviceAccounts[i], f)
	}
	for _, l := range srv.Env() {
		fmt.Fprintf(w, "  %s\n", l)
	}
	if cfg.envFile != "" {
		fmt.Fprintf(w, "env file: %s (load with: set -a; . %s; set +a)\n", cfg.envFile, cfg.envFile)
	}
	fmt.Fprintln(w, "\nSPIRE server.conf:")
	fmt.Fprintln(w, `  KeyManager "gcp_kms" {`)
	fmt.Fprintln(w, `    plugin_cmd = "/path/to/kmskeeper"`)
	fmt.Fprintln(w, `    plugin_data {`)
	fmt.Fprintf(w, "      key_ring             = %q\n", cfg.opts.KeyRings[0])
	fmt.Fprintln(w, `      key_identifier_value = "emulator-server"`)
	// The plugin dials a loopback host:port in plaintext; over TLS it needs
	// https:// and the emulator's CA (SSL_CERT_FILE in its environment).
	endpoint := srv.Addr()
	if cfg.opts.TLS {
		endpoint = "https://" + endpoint
	}
	fmt.Fprintf(w, "      endpoint             = %q\n", endpoint)
	if len(saFiles) > 0 {
		fmt.Fprintf(w, "      service_account_file = %q\n", saFiles[0])
	}
	fmt.Fprintln(w, `    }`)
	fmt.Fprintln(w, `  }`)
	if cfg.opts.TLS {
		fmt.Fprintln(w, "  (start spire-server with SSL_CERT_FILE set to the CA file above, so the plugin trusts the emulator)")
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to stop.")
}
