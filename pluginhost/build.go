package pluginhost

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// mainPackage is the kmskeeper binary's import path.
const mainPackage = "github.com/kmskeeper/kmskeeper/cmd/kmskeeper"

// BuildOptions says how to build the kmskeeper binary.
type BuildOptions struct {
	// Dir is where the binary is written. Required.
	Dir string
	// Tags are build tags; kmskeeper_testbackend adds the in-memory backend.
	Tags []string
	// Race builds with the race detector, so that end-to-end tests run
	// under -race also check the plugin process.
	Race bool
}

// BuildBinary builds the kmskeeper binary into dir with the given build tags
// (kmskeeper_testbackend adds the in-memory backend) and returns its path.
func BuildBinary(ctx context.Context, dir string, tags ...string) (string, error) {
	return Build(ctx, BuildOptions{Dir: dir, Tags: tags})
}

// Build builds the kmskeeper binary as opts says and returns its path. It
// must run inside the module (tests do); the go build cache makes repeated
// builds cheap, but a test package should build once, in TestMain.
func Build(ctx context.Context, opts BuildOptions) (string, error) {
	gomod, err := goEnv(ctx, "GOMOD")
	if err != nil {
		return "", err
	}
	if gomod == "" || gomod == "/dev/null" {
		return "", fmt.Errorf("pluginhost: building %s: not inside the kmskeeper module", mainPackage)
	}
	if opts.Dir == "" {
		return "", fmt.Errorf("pluginhost: building %s: no output directory", mainPackage)
	}
	out := filepath.Join(opts.Dir, "kmskeeper")
	args := []string{"build", "-o", out}
	if opts.Race {
		args = append(args, "-race")
	}
	if len(opts.Tags) > 0 {
		args = append(args, "-tags", strings.Join(opts.Tags, ","))
	}
	args = append(args, mainPackage)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Dir(gomod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pluginhost: go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

func goEnv(ctx context.Context, name string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("pluginhost: go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
