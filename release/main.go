// Command release builds kmskeeper's release artifacts in one step, from
// the repository's checked-out commit: static binaries for each target,
// their CycloneDX SBOMs, the container image for Kubernetes' init-container
// pattern (an OCI layout and docker-loadable archives, written without a
// container engine by go-containerregistry), and SHA256SUMS.
//
// Run it from the repository's root:
//
//	go -C release run . -out ../dist
//
// It is a module of its own so that its tools (go-containerregistry,
// cyclonedx-gomod) stay out of the plugin's go.mod: a SPIRE operator
// auditing what the plugin links sees only what the plugin uses.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	out := fs.String("out", "../dist", "directory to write the artifacts to (relative to release/)")
	repo := fs.String("repo", "..", "the repository's root")
	version := fs.String("version", "", "version to stamp (default: the tag on the commit, or 0.0.0-<commit time>-<commit>)")
	targets := fs.String("targets", "", "comma-separated os/arch list (default: linux/amd64,linux/arm64,darwin/amd64,darwin/arm64)")
	sbom := fs.Bool("sbom", true, "write a CycloneDX SBOM per binary")
	image := fs.Bool("image", true, "write the container image for the Linux targets")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := Options{Repo: *repo, Out: *out, SBOM: *sbom, Image: *image, Log: os.Stderr, Targets: DefaultTargets()}
	if *targets != "" {
		o.Targets = nil
		for _, s := range strings.Split(*targets, ",") {
			t, err := ParseTarget(strings.TrimSpace(s))
			if err != nil {
				return err
			}
			o.Targets = append(o.Targets, t)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if o.Stamp, err = StampFromGit(ctx, o.Repo, *version); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kmskeeper %s, commit %s of %s\n", o.Stamp.Version, o.Stamp.Commit, o.Stamp.Date.Format("2006-01-02 15:04:05 UTC"))
	a, err := Run(ctx, o)
	if err != nil {
		return err
	}
	abs, _ := filepath.Abs(o.Out)
	fmt.Fprintf(os.Stderr, "wrote %d binaries, %d SBOMs, %d image archives and %s to %s\n", len(a.Binaries), len(a.SBOMs), len(a.Tarballs), a.Checksums, abs)
	return nil
}
