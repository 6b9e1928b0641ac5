package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stamp is what a release build writes into the binary and the image: the
// version, the commit and the commit's time. The time is the commit's, not
// the clock's, so that two builds of one commit are identical.
type Stamp struct {
	Version string
	Commit  string
	Date    time.Time
}

// Target is one platform a release binary is built for.
type Target struct {
	OS, Arch string
}

func (t Target) String() string { return t.OS + "/" + t.Arch }

// ParseTarget reads "os/arch".
func ParseTarget(s string) (Target, error) {
	os, arch, ok := strings.Cut(s, "/")
	if !ok || os == "" || arch == "" || strings.Contains(arch, "/") {
		return Target{}, fmt.Errorf("target %q is not os/arch, such as linux/amd64", s)
	}
	return Target{os, arch}, nil
}

// DefaultTargets returns the platforms a release covers: the two Linux
// architectures SPIRE servers run on, and macOS for the command-line tool
// and the emulators.
func DefaultTargets() []Target {
	return []Target{{"linux", "amd64"}, {"linux", "arm64"}, {"darwin", "amd64"}, {"darwin", "arm64"}}
}

// Options say what one release run builds.
type Options struct {
	// Repo is the repository's root (the main module).
	Repo string
	// Out is the directory the artifacts are written to; it is created,
	// and must not hold artifacts of another run.
	Out string
	// Targets are the platforms to build binaries for.
	Targets []Target
	// Stamp is written into the binaries and the image.
	Stamp Stamp
	// SBOM writes a CycloneDX SBOM per binary.
	SBOM bool
	// Image writes the container image (its Linux targets only).
	Image bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Artifacts lists what a run wrote, as paths relative to Options.Out.
type Artifacts struct {
	Binaries  map[Target]string
	SBOMs     []string
	Image     string   // the OCI layout directory; "" without an image
	Tarballs  []string // docker-loadable image archives, one per Linux target
	Checksums string
}

// Run builds the release artifacts: a static binary per target, a CycloneDX
// SBOM per binary, the container image (an OCI layout holding one index for
// the Linux targets, and a docker-loadable archive per Linux target), and a
// SHA256SUMS file covering every file, whose lines sha256sum -c reads and
// whose binary lines give plugin_checksum.
func Run(ctx context.Context, o Options) (*Artifacts, error) {
	if len(o.Targets) == 0 {
		return nil, errors.New("no target to build")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	a := &Artifacts{Binaries: map[Target]string{}}
	for _, t := range o.Targets {
		name := "kmskeeper-" + t.OS + "-" + t.Arch
		o.logf("building %s", name)
		if err := BuildBinary(ctx, o.Repo, t, o.Stamp, filepath.Join(o.Out, name)); err != nil {
			return nil, err
		}
		a.Binaries[t] = name
		if o.SBOM {
			sbom := name + ".cdx.json"
			o.logf("writing %s", sbom)
			if err := WriteSBOM(ctx, filepath.Join(o.Out, name), o.Stamp.Version, filepath.Join(o.Out, sbom)); err != nil {
				return nil, err
			}
			a.SBOMs = append(a.SBOMs, sbom)
		}
	}
	if o.Image {
		linux := map[string]string{}
		for t, name := range a.Binaries {
			if t.OS == "linux" {
				linux[t.Arch] = filepath.Join(o.Out, name)
			}
		}
		if len(linux) == 0 {
			return nil, errors.New("the image needs a linux target")
		}
		o.logf("writing the container image for %d architectures", len(linux))
		a.Image = "kmskeeper-image-oci"
		tarballs, err := WriteImage(linux, o.Stamp, filepath.Join(o.Out, a.Image), o.Out)
		if err != nil {
			return nil, err
		}
		a.Tarballs = tarballs
	}
	var files []string
	for _, name := range a.Binaries {
		files = append(files, name)
	}
	files = append(files, a.SBOMs...)
	files = append(files, a.Tarballs...)
	a.Checksums = "SHA256SUMS"
	if err := WriteChecksums(o.Out, files, filepath.Join(o.Out, a.Checksums)); err != nil {
		return nil, err
	}
	return a, nil
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// ldflags returns the linker flags of a release build: symbol tables left
// out (-s -w), and the stamp written into cmd/kmskeeper's version, commit
// and date.
func ldflags(s Stamp) string {
	return strings.Join([]string{
		"-s", "-w",
		"-X main.version=" + s.Version,
		"-X main.commit=" + s.Commit,
		"-X main.date=" + s.Date.UTC().Format(time.RFC3339),
	}, " ")
}

// BuildBinary builds cmd/kmskeeper of repo for t: static (CGO off), with
// paths trimmed so that nothing of the build machine is in it, the module
// graph as go.sum pins it, and the stamp. The Go toolchain decides the
// bytes: the same commit built by the same Go version gives the same file.
func BuildBinary(ctx context.Context, repo string, t Target, s Stamp, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-mod=readonly", "-ldflags", ldflags(s), "-o", abs, "./cmd/kmskeeper")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+t.OS, "GOARCH="+t.Arch, "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build for %s: %w\n%s", t, err, b)
	}
	return nil
}

// WriteSBOM writes a CycloneDX SBOM (JSON) of a built binary with
// cyclonedx-gomod, the CycloneDX project's generator for Go, run as this
// module's tool at the version go.mod pins. Its bin mode reads the module
// list the Go linker embedded in the binary, so the SBOM lists exactly what
// that binary holds, for its platform, the Go standard library included.
// The serial number and timestamp are left out, so that the SBOM of a
// commit is the same at every build.
func WriteSBOM(ctx context.Context, binary, version, out string) error {
	absBin, err := filepath.Abs(binary)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "tool", "cyclonedx-gomod", "bin", "-json", "-std", "-noserial", "-notimestamp", "-version", version, "-output", abs, absBin)
	cmd.Dir = moduleDir()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cyclonedx-gomod for %s: %w\n%s", binary, err, b)
	}
	return nil
}

// moduleDir is the release module's directory, where `go tool` finds
// cyclonedx-gomod: the working directory when run with go -C release, as
// tests are.
func moduleDir() string {
	if _, err := os.Stat("go.mod"); err == nil {
		return "."
	}
	return "release"
}

// WriteChecksums writes out in sha256sum's format, "<hex>  <name>" per
// file of dir, sorted by name: sha256sum -c checks the files with it, and
// the hex of a binary's line is its plugin_checksum.
func WriteChecksums(dir string, files []string, out string) error {
	names := slices.Clone(files)
	slices.Sort(names)
	var b bytes.Buffer
	for _, name := range names {
		sum, err := fileSHA256(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, name)
	}
	return os.WriteFile(out, b.Bytes(), 0o644)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// versionPattern is what a version may hold: it becomes an image tag.
var versionPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// StampFromGit reads the stamp of repo's checked-out commit: its full hash,
// its committer time (or SOURCE_DATE_EPOCH, when set, as reproducible-build
// tools expect), and version, or when version is empty the tag on the
// commit (git describe --tags --exact-match), or else
// 0.0.0-<yyyymmddhhmmss>-<12 hex of the commit>, Go's pseudo-version
// layout; either with -dirty appended when tracked files have changes.
func StampFromGit(ctx context.Context, repo, version string) (Stamp, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = repo
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(b)), nil
	}
	var s Stamp
	var err error
	if s.Commit, err = git("rev-parse", "HEAD"); err != nil {
		return s, err
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = git("log", "-1", "--format=%ct", "HEAD"); err != nil {
			return s, err
		}
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return s, fmt.Errorf("the commit time (SOURCE_DATE_EPOCH) %q is not Unix seconds", epoch)
	}
	s.Date = time.Unix(sec, 0).UTC()
	switch {
	case version != "":
		s.Version = version
	default:
		if tag, err := git("describe", "--tags", "--exact-match", "HEAD"); err == nil {
			s.Version = tag
		} else {
			s.Version = "0.0.0-" + s.Date.Format("20060102150405") + "-" + s.Commit[:12]
		}
		// A build of changed files is not the commit's: say so, as git
		// describe --dirty does.
		if changed, err := git("status", "--porcelain", "--untracked-files=no"); err != nil {
			return s, err
		} else if changed != "" {
			s.Version += "-dirty"
		}
	}
	if !versionPattern.MatchString(s.Version) {
		return s, fmt.Errorf("version %q may hold only letters, digits, '_', '.' and '-' (it becomes the image's tag)", s.Version)
	}
	return s, nil
}
