package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/operator"
)

// operatorFlags are the flags validate, keys list and gc share.
type operatorFlags struct {
	config      string
	plugin      string
	trustDomain string
	json        bool
	verbose     bool
	// decommissioned is gc's and keys list's --decommissioned.
	decommissioned bool
}

const configHelp = `The configuration is read from --config: either a SPIRE server.conf (the
KeyManager block is used: plugin_data or plugin_data_file; with several
KeyManager blocks, name one with --plugin; trust_domain, ca_key_type and
jwt_key_type are read from its server block), or a file holding only the
plugin_data body. Credentials come from the same place as the plugin's:
plugin_data, then the environment (AZURE_*, GOOGLE_APPLICATION_CREDENTIALS),
then managed/workload identity.`

func (f *operatorFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "path of a SPIRE server.conf or of a plugin_data body (required)")
	fs.StringVar(&f.plugin, "plugin", "", "name of the KeyManager block in server.conf, when it has several")
	fs.StringVar(&f.trustDomain, "trust-domain", "", "trust domain (default: server.conf's trust_domain)")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of a table")
	fs.BoolVar(&f.verbose, "verbose", false, "log the backend's calls to stderr")
}

// callBudget bounds each cloud call of the operator commands, retries
// included: the plugin's own budget (tests shorten it).
var callBudget = engine.DefaultBudget

// open reads the configuration source and builds the shared options.
func (f *operatorFlags) open(stderr io.Writer) (*operator.Source, operator.Options, error) {
	if f.config == "" {
		return nil, operator.Options{}, usageError{"--config is required: the path of a server.conf or a plugin_data file"}
	}
	src, err := operator.ReadSource(f.config, f.plugin)
	if err != nil {
		return nil, operator.Options{}, err
	}
	level := hclog.Warn
	if f.verbose {
		level = hclog.Debug
	}
	o := operator.Options{
		Kinds:       backendKinds(),
		TrustDomain: f.trustDomain,
		Logger:      hclog.New(&hclog.LoggerOptions{Output: stderr, Level: level}),
		Budget:      callBudget,

		Decommissioned: f.decommissioned,
	}
	if file, ok := stderr.(*os.File); ok && operator.IsTerminal(file) && !f.json {
		o.Progress = stderr
	}
	return src, o, nil
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, strings.TrimSpace(usage))
		fmt.Fprintln(stderr, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f operatorFlags
	var probe bool
	fs := newFlagSet("validate", `Usage: kmskeeper validate --config <server.conf|plugin_data file> [--probe] [flags]

Checks a kmskeeper configuration before SPIRE uses it: every check the plugin
runs at Configure, then read-only checks of the cloud (credentials obtained,
vault or key ring reachable, list permission, the migrate_from source).

--probe also creates a throwaway key of each key type server.conf asks for
(ca_key_type, jwt_key_type; EC P-256 by default), signs with it, verifies the
signature and retires the key, proving the create, sign and delete
permissions and HSM availability. Probe keys are tagged with server ID
"`+operator.ProbeServerID+`" and are retired even when a step fails.

Every configuration problem is reported in one run, each naming its key and
the fix; the cloud checks run once the configuration has none. --offline
stops before them: it needs no credentials and no network, for checking
configuration in CI. Exits 0 only
when every check passed; --json prints the same report for scripts.

`+configHelp, stderr)
	f.register(fs)
	fs.BoolVar(&probe, "probe", false, "also create, sign with, verify and retire a throwaway key of each configured type")
	var offline bool
	fs.BoolVar(&offline, "offline", false, "only the checks that need no cloud: the configuration and the identifier file (no credentials needed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if offline && probe {
		return usageError{"validate: --offline and --probe exclude each other: --probe needs the cloud"}
	}
	src, o, err := f.open(stderr)
	if err != nil {
		return err
	}
	o.Offline = offline
	r := operator.Validate(ctx, src, o, probe)
	if err := operator.PrintReport(stdout, r, f.json); err != nil {
		return err
	}
	if !r.OK() {
		return errSilent
	}
	return nil
}

// errSilent fails the command without a further message: the output already
// says what failed.
var errSilent = errors.New("")

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		fmt.Fprintln(stderr, "Usage: kmskeeper keys list --config <file> [flags]\n\nRun 'kmskeeper keys list --help' for the flags.")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return usageError{"keys: the only subcommand is list"}
	}
	var f operatorFlags
	fs := newFlagSet("keys list", `Usage: kmskeeper keys list --config <server.conf|plugin_data file> [flags]

Lists every key of the trust domain in the vault or key ring: the SPIRE key
ID, type, owning server (this server's marked), when it was last kept alive,
its state, what the plugin's cleanup would do with it, and the cloud key
name and version.

States: in use (this server serves it), superseded (an older generation of
one of this server's keys; cleanup retires it), foreign (another server's,
kept alive), stale (another server's, not kept alive for 14 days; cleanup
retires it), decommissioned (with --decommissioned: this server's keys, all
to be retired).

`+configHelp, stderr)
	f.register(fs)
	fs.BoolVar(&f.decommissioned, "decommissioned", false, "show what gc --decommissioned would do: the configured server has stopped for good")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	src, o, err := f.open(stderr)
	if err != nil {
		return err
	}
	s, err := operator.Open(ctx, src, o)
	if err != nil {
		return err
	}
	defer s.Close()
	rows, _, err := operator.ListKeys(ctx, s, o, time.Now())
	if err != nil {
		return err
	}
	return operator.PrintKeys(stdout, rows, f.json)
}

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f operatorFlags
	var apply, dryRun bool
	fs := newFlagSet("gc", `Usage: kmskeeper gc --config <server.conf|plugin_data file> [--apply] [flags]

Runs the plugin's cleanup logic once. By default (--dry-run) it only prints
what would be retired; --apply retires it: this server's superseded key
generations, and other servers' keys not kept alive for 14 days. A key the
liveness rule still protects (in use, or another server's key kept alive) is
never touched. Retiring deletes an Azure key (soft delete; purged when
purge_deleted_keys = true) or schedules a Cloud KMS key version for
destruction.

--decommissioned says the server the configuration describes has stopped for
good: every key of its server ID is retired too, in use or not. It is refused
while any of those keys was updated (created, rotated or kept alive) within
the lease period (72 hours: the keep-alive age plus twice the longest
liveness_interval), since a running server updates every key it serves more
often than that. Use it after a migration between clouds, with --config
pointing at the old cloud's configuration once the new server no longer has
migrate_from; or to clean up after a server removed from the trust domain.

`+configHelp, stderr)
	f.register(fs)
	fs.BoolVar(&dryRun, "dry-run", true, "print what would be retired and change nothing (the default)")
	fs.BoolVar(&apply, "apply", false, "retire the keys the plan marks")
	fs.BoolVar(&f.decommissioned, "decommissioned", false, "the configured server has stopped for good: retire all of its keys (refused while one was updated in the last 72 hours)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, o, err := f.open(stderr)
	if err != nil {
		return err
	}
	s, err := operator.Open(ctx, src, o)
	if err != nil {
		return err
	}
	defer s.Close()
	rows, gcErr := operator.GC(ctx, s, o, time.Now(), apply)
	if err := operator.PrintKeys(stdout, rows, f.json); err != nil {
		return err
	}
	if !apply && !f.json {
		n := 0
		for _, r := range rows {
			if r.Cleanup == "retire" {
				n++
			}
		}
		fmt.Fprintf(stdout, "\nDry run: %d keys would be retired. Run again with --apply to retire them.\n", n)
	}
	return gcErr
}
