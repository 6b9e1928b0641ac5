package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

func runEmulator(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := func(w io.Writer) {
		fmt.Fprint(w, `Usage: kmskeeper emulator <azure|gcp> [flags]

Runs a local cloud KMS emulator on loopback for development and CI:
  azure   Azure Key Vault / Managed HSM with Entra ID token endpoints (HTTPS)
  gcp     Google Cloud KMS with IAM policies (gRPC)

Run 'kmskeeper emulator <azure|gcp> --help' for the flags of each.
`)
	}
	if len(args) == 0 {
		usage(stderr)
		return usageError{"emulator: name azure or gcp"}
	}
	switch args[0] {
	case "azure":
		return runEmulatorAzure(ctx, args[1:], stdout, stderr)
	case "gcp":
		return runEmulatorGCP(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return flag.ErrHelp
	default:
		usage(stderr)
		return usageError{fmt.Sprintf("emulator: unknown emulator %q (want azure or gcp)", args[0])}
	}
}
