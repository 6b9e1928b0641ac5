package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image layout: the binary alone, at imageBinary, run as a user that is not
// root and owns nothing in the image.
const (
	imageBinary = "/kmskeeper"
	// imageUser is the conventional unprivileged "nonroot" user and group
	// of minimal images; no file of the image belongs to it.
	imageUser = "65532:65532"
	// imageRepository names the image in the docker archives; push it
	// under your own registry's name.
	imageRepository = "kmskeeper"
	sourceURL       = "https://github.com/kmskeeper/kmskeeper"
)

// WriteImage writes the container image of the init-container pattern for
// the Linux binaries given (architecture to path): an image per
// architecture whose only layer holds the binary, from no base (scratch),
// its user unprivileged, its entrypoint the binary. They go into an OCI
// image layout at layoutDir (one multi-architecture index, tagged with the
// version), and each into a docker-loadable archive in tarDir. Every time
// in them is the commit's, and the layer is built from the binary alone,
// so the same binaries give the same image digests. It returns the
// archives' names.
func WriteImage(binaries map[string]string, s Stamp, layoutDir, tarDir string) ([]string, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var tarballs []string
	for _, arch := range slices.Sorted(maps.Keys(binaries)) {
		img, err := archImage(binaries[arch], arch, s)
		if err != nil {
			return nil, fmt.Errorf("image for linux/%s: %w", arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
		tag, err := name.NewTag(imageRepository + ":" + s.Version)
		if err != nil {
			return nil, err
		}
		archive := "kmskeeper-image-linux-" + arch + ".tar"
		if err := tarball.WriteToFile(filepath.Join(tarDir, archive), tag, img); err != nil {
			return nil, fmt.Errorf("writing %s: %w", archive, err)
		}
		tarballs = append(tarballs, archive)
	}
	if err := os.RemoveAll(layoutDir); err != nil {
		return nil, err
	}
	p, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		return nil, err
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": s.Version})); err != nil {
		return nil, err
	}
	return tarballs, nil
}

// archImage builds the image of one architecture.
func archImage(binary, arch string, s Stamp) (v1.Image, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	layerTar, err := binaryLayer(data, s)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: s.Date},
			CreatedBy: "kmskeeper release: the static binary",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: s.Date}
	cf.Config = v1.Config{
		User:       imageUser,
		Entrypoint: []string{imageBinary},
		Cmd:        []string{"version"},
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":    "kmskeeper",
			"org.opencontainers.image.version":  s.Version,
			"org.opencontainers.image.revision": s.Commit,
			"org.opencontainers.image.created":  s.Date.UTC().Format("2006-01-02T15:04:05Z"),
			"org.opencontainers.image.source":   sourceURL,
		},
	}
	return mutate.ConfigFile(img, cf)
}

// binaryLayer returns the uncompressed tar of the image's only layer: the
// binary at imageBinary, owned by root, mode 0555 (the unprivileged user
// runs it and cannot change it), dated at the commit.
func binaryLayer(data []byte, s Stamp) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     imageBinary[1:],
		Mode:     0o555,
		Size:     int64(len(data)),
		ModTime:  s.Date,
		Format:   tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
