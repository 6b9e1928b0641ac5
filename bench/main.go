package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
)

func main() {
	if isFloorPlugin() {
		floorMain()
		return
	}
	if spec := os.Getenv(signerEnv); spec != "" {
		os.Exit(signerMain(spec))
	}
	os.Exit(mainErr())
}

func mainErr() int {
	var opts Options
	var backends, only string
	flag.StringVar(&backends, "backend", "all", "azure, gcp or all")
	flag.BoolVar(&opts.Short, "short", false, "tiny sample sizes (CI): checks that every row is produced, figures are not meaningful")
	flag.StringVar(&only, "only", "", "comma-separated measurement numbers to run (1-8); empty runs all")
	flag.StringVar(&opts.ProfileDir, "profile", "", "write CPU profiles of every plugin process into this directory (uses a profiling build of the plugin)")
	flag.StringVar(&opts.Binary, "binary", "", "plugin binary to measure instead of building cmd/kmskeeper")
	flag.Parse()

	switch backends {
	case "all":
		opts.Backends = []string{"azure", "gcp"}
	case "azure", "gcp":
		opts.Backends = []string{backends}
	default:
		fmt.Fprintln(os.Stderr, errUnknownBackend(backends))
		return 2
	}
	if only != "" {
		opts.Only = map[int]bool{}
		for _, f := range strings.Split(only, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 8 {
				fmt.Fprintf(os.Stderr, "-only: %q is not a measurement number 1-8\n", f)
				return 2
			}
			opts.Only[n] = true
		}
	}
	opts.Progress = os.Stderr
	opts.Race = raceEnabled

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rows, err := Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	printMachine(ctx, os.Stdout)
	printTable(os.Stdout, rows)
	return 0
}
