package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version, commit and date are stamped by the release build (release/,
// `go -C release run .`) with -ldflags "-X main.version=... -X
// main.commit=... -X main.date=...", so that an operator can tell which
// release a running plugin is and match it to the published checksums. date
// is the commit's time, not the build's, so that two builds of one commit
// are byte for byte the same. A plain `go build` leaves them unset and the
// commit and date are read from the build's VCS stamp instead.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kmskeeper version\n\nPrints the kmskeeper version, the commit it was built from, the commit's date and the Go version.")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, d := commit, date
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	fmt.Fprintf(stdout, "kmskeeper %s\ncommit: %s\ndate: %s\ngo: %s %s/%s\n", version, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
