// Command kmskeeper is a SPIRE server KeyManager plugin that keeps a trust
// domain's signing keys in a cloud KMS or HSM.
//
// Launched by SPIRE (environment KeyManager=KeyManager) it serves the plugin
// protocol on go-plugin; run by a person it is a command-line tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand of the CLI.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the CLI subcommands in the order --help shows them.
func commands() []command {
	return []command{
		{"demo", "run the whole SPIRE key flow against the built-in emulator (no cloud account needed)", runDemo},
		{"emulator", "run a local Azure Key Vault (azure) or Google Cloud KMS (gcp) emulator", runEmulator},
		{"validate", "check a configuration and the cloud permissions before deploying (--probe: create, sign, retire a test key)", runValidate},
		{"keys", "keys list: every key of the trust domain, its state and what cleanup would do", runKeys},
		{"gc", "run the plugin's cleanup once (dry run by default; --apply retires)", runGC},
		{"install", "copy this binary to a path and print its SHA-256 (the container image's init container runs it)", runInstall},
		{"version", "print the version, commit, commit date and Go version", runVersion},
	}
}

func main() {
	if isPluginMode() {
		os.Exit(servePlugin())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := runCLI(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && err.Error() != "" {
			fmt.Fprintln(os.Stderr, "kmskeeper:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode maps a CLI error to a process exit code: 0 for --help, 2 for usage
// errors, 1 for everything else.
func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// usageError marks a mistake in how the command was invoked.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func runCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return usageError{"no command given"}
		}
		return flag.ErrHelp
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	printUsage(stderr)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `kmskeeper keeps a SPIRE trust domain's CA and JWT signing keys in a cloud KMS/HSM
(Azure Key Vault, Azure Managed HSM, Google Cloud KMS).

When SPIRE starts it as a KeyManager plugin (plugin_cmd), it serves the plugin
protocol. Run by hand, it is a command-line tool:

Usage: kmskeeper <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'kmskeeper <command> --help' for a command's flags.\n")
}
