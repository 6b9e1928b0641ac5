package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestRelease runs the release for the machine's Linux architecture and
// checks every artifact as its user would: SHA256SUMS matches the files;
// the SBOM names the version and the plugin's dependencies; the image (from
// the OCI layout and from the docker archive, which must be the same image)
// runs as a user that is not root and holds the stamped binary and nothing
// else, which, taken out of the image, prints the stamp with `version` and
// copies itself as the init container does with `install`.
func TestRelease(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image holds Linux binaries; this test runs one")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	stamp, err := StampFromGit(ctx, "..", "1.2.3-test")
	if err != nil {
		t.Fatal(err)
	}
	target := Target{"linux", runtime.GOARCH}
	out := t.TempDir()
	a, err := Run(ctx, Options{Repo: "..", Out: out, Targets: []Target{target}, Stamp: stamp, SBOM: true, Image: true})
	if err != nil {
		t.Fatal(err)
	}
	bin := a.Binaries[target]

	// SHA256SUMS: one "<hex>  <name>" line per file, as sha256sum writes.
	sums := readChecksums(t, filepath.Join(out, a.Checksums))
	wantFiles := append([]string{bin}, a.SBOMs...)
	wantFiles = append(wantFiles, a.Tarballs...)
	slices.Sort(wantFiles)
	if got := slices.Sorted(slices.Values(mapKeys(sums))); !slices.Equal(got, wantFiles) {
		t.Errorf("SHA256SUMS lists %v, want %v", got, wantFiles)
	}
	for name, sum := range sums {
		if got, err := fileSHA256(filepath.Join(out, name)); err != nil || got != sum {
			t.Errorf("SHA256SUMS says %s for %s; the file's is %s (%v)", sum, name, got, err)
		}
	}

	// The SBOM describes this binary.
	var bom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Name, Version string
			} `json:"component"`
		} `json:"metadata"`
		Components []struct{ Name, Version string } `json:"components"`
	}
	data, err := os.ReadFile(filepath.Join(out, bin+".cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &bom); err != nil {
		t.Fatalf("the SBOM is not JSON: %v", err)
	}
	var names []string
	for _, c := range bom.Components {
		names = append(names, c.Name)
	}
	if bom.BOMFormat != "CycloneDX" || bom.Metadata.Component.Version != stamp.Version ||
		!slices.Contains(names, "github.com/hashicorp/go-plugin") || !slices.Contains(names, "github.com/Azure/azure-sdk-for-go/sdk/azcore") {
		t.Errorf("the SBOM (%s, version %q) does not describe kmskeeper %s and its dependencies: %v", bom.BOMFormat, bom.Metadata.Component.Version, stamp.Version, names)
	}

	// The image, from the OCI layout's index for this architecture.
	img := layoutImage(t, filepath.Join(out, a.Image), stamp.Version, runtime.GOARCH)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if u := cf.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root") {
		t.Errorf("the image runs as user %q, want an unprivileged one", u)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{imageBinary}) || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("image config: entrypoint %v, platform %s/%s", cf.Config.Entrypoint, cf.OS, cf.Architecture)
	}
	if cf.Config.Labels["org.opencontainers.image.version"] != stamp.Version || cf.Config.Labels["org.opencontainers.image.revision"] != stamp.Commit || !cf.Created.Time.Equal(stamp.Date) {
		t.Errorf("image labels %v, created %s: want the stamp %+v", cf.Config.Labels, cf.Created, stamp)
	}
	extracted := onlyFile(t, img, filepath.Join(t.TempDir(), "kmskeeper"))

	// The docker archive holds the same image.
	tb, err := tarball.ImageFromPath(filepath.Join(out, "kmskeeper-image-linux-"+runtime.GOARCH+".tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d1, d2 := imageID(t, img), imageID(t, tb); d1 != d2 {
		t.Errorf("the docker archive holds image %s, the OCI layout %s", d2, d1)
	}

	// The binary in the image is the released one, stamped.
	if got, _ := fileSHA256(extracted); got != sums[bin] {
		t.Errorf("the image's binary has SHA-256 %s, the release's %s", got, sums[bin])
	}
	cmd := exec.CommandContext(ctx, extracted, "version")
	cmd.Env = []string{} // as in the image: nothing set
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the image's binary: version: %v\n%s", err, got)
	}
	for _, w := range []string{"kmskeeper " + stamp.Version + "\n", "commit: " + stamp.Commit + "\n", "date: " + stamp.Date.Format(time.RFC3339) + "\n", "linux/" + runtime.GOARCH} {
		if !strings.Contains(string(got), w) {
			t.Errorf("version prints %q, want it to contain %q", got, w)
		}
	}
	plugins := t.TempDir()
	got, err = exec.CommandContext(ctx, extracted, "install", plugins).CombinedOutput()
	if err != nil || !strings.Contains(string(got), "sha256: "+sums[bin]) {
		t.Errorf("the image's binary: install: %v\n%s", err, got)
	}
	if copied, _ := fileSHA256(filepath.Join(plugins, "kmskeeper")); copied != sums[bin] {
		t.Errorf("install copied a file with SHA-256 %q, want %s", copied, sums[bin])
	}
}

// TestImageIsReproducible checks that the same binaries and stamp give the
// same image, byte for byte: the layout's blobs and the docker archive.
func TestImageIsReproducible(t *testing.T) {
	dir := t.TempDir()
	binaries := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		p := filepath.Join(dir, arch)
		if err := os.WriteFile(p, []byte("a binary for "+arch), 0o755); err != nil {
			t.Fatal(err)
		}
		binaries[arch] = p
	}
	s := Stamp{Version: "1.0.0", Commit: strings.Repeat("ab", 20), Date: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	var runs [2]string
	for i := range runs {
		runs[i] = filepath.Join(dir, "run"+string(rune('a'+i)))
		if err := os.MkdirAll(runs[i], 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteImage(binaries, s, filepath.Join(runs[i], "oci"), runs[i]); err != nil {
			t.Fatal(err)
		}
	}
	first := treeFiles(t, runs[0])
	if len(first) < 8 { // oci-layout, index.json, 2 archives, index, 2 manifests, 2 configs, 2 layers
		t.Fatalf("the image run wrote only %v", slices.Sorted(slices.Values(mapKeys(first))))
	}
	second := treeFiles(t, runs[1])
	for name, data := range first {
		if !bytes.Equal(data, second[name]) {
			t.Errorf("%s differs between two runs", name)
		}
	}
	if len(second) != len(first) {
		t.Errorf("the runs wrote %d and %d files", len(first), len(second))
	}
	// A different binary gives a different image.
	os.WriteFile(binaries["amd64"], []byte("another binary"), 0o755)
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	if _, err := WriteImage(binaries, s, filepath.Join(other, "oci"), other); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(treeFiles(t, other)["oci/index.json"], first["oci/index.json"]) {
		t.Error("a different binary gave the same image index")
	}
}

// TestStampFromGit checks the stamp read from the repository.
func TestStampFromGit(t *testing.T) {
	ctx := t.Context()
	tests := []struct {
		name, version, epoch string
		want                 *regexp.Regexp
		wantDate             time.Time
		wantErr              string
	}{
		{name: "given version", version: "2.0.1", want: regexp.MustCompile(`^2\.0\.1$`)},
		{name: "default version", want: regexp.MustCompile(`^(v?\d+\.\d+\.\d+.*|0\.0\.0-\d{14}-[0-9a-f]{12}(-dirty)?)$`)},
		{name: "SOURCE_DATE_EPOCH", version: "1", epoch: "1700000000", want: regexp.MustCompile(`^1$`), wantDate: time.Unix(1700000000, 0)},
		{name: "bad SOURCE_DATE_EPOCH", epoch: "yesterday", wantErr: "not Unix seconds"},
		{name: "version unfit for a tag", version: "1.0 beta", wantErr: "becomes the image's tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.epoch)
			s, err := StampFromGit(ctx, "..", tt.version)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want.MatchString(s.Version) || !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(s.Commit) || s.Date.IsZero() {
				t.Errorf("stamp %+v", s)
			}
			if !tt.wantDate.IsZero() && !s.Date.Equal(tt.wantDate) {
				t.Errorf("date %s, want %s", s.Date, tt.wantDate)
			}
		})
	}
}

// TestParseTarget checks the -targets syntax.
func TestParseTarget(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Target
		ok   bool
	}{
		{"linux/amd64", Target{"linux", "amd64"}, true},
		{"darwin/arm64", Target{"darwin", "arm64"}, true},
		{"linux", Target{}, false},
		{"linux/", Target{}, false},
		{"/amd64", Target{}, false},
		{"linux/arm/v7", Target{}, false},
	} {
		got, err := ParseTarget(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseTarget(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func readChecksums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := regexp.MustCompile(`^([0-9a-f]{64})  (\S+)$`)
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("SHA256SUMS line %q is not \"<sha256 hex>  <file>\"", sc.Text())
		}
		sums[m[2]] = m[1]
	}
	return sums
}

// layoutImage returns the image for arch from the index tagged version in
// the OCI layout at dir.
func layoutImage(t *testing.T, dir, version, arch string) v1.Image {
	t.Helper()
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := root.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Manifests) != 1 || rm.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version {
		t.Fatalf("the layout's index.json holds %+v, want one index tagged %s", rm.Manifests, version)
	}
	idx, err := root.ImageIndex(rm.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("the image index has no linux/%s image: %+v", arch, im.Manifests)
	return nil
}

// onlyFile checks that img has one layer holding one file, the binary at
// imageBinary, not writable by anyone, and writes it to path, executable.
func onlyFile(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("the image has %d layers (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var entries []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, h.Name)
		if h.Name != strings.TrimPrefix(imageBinary, "/") || h.Typeflag != tar.TypeReg {
			continue
		}
		if h.Mode&0o222 != 0 || h.Mode&0o111 == 0 {
			t.Errorf("the binary's mode is %o, want executable and not writable", h.Mode)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if len(entries) != 1 {
		t.Fatalf("the image's layer holds %v, want the binary alone", entries)
	}
	return path
}

// imageID identifies an image by its config and its layers' content: the
// docker archive keeps both, though its manifest is docker's, not OCI's.
func imageID(t *testing.T, img v1.Image) string {
	t.Helper()
	c, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	id := c.String()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		id += " " + d.String()
	}
	return id
}

// treeFiles reads every file under dir, by path relative to it.
func treeFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mapKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
