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

// BuildBinary builds the kmskeeper binary into dir with the given build tags
// (kmskeeper_testbackend adds the in-memory backend) and returns its path.
// It must run inside the module (tests do); the go build cache makes
// repeated builds cheap, but a test package should build once, in TestMain.
func BuildBinary(ctx context.Context, dir string, tags ...string) (string, error) {
	gomod, err := goEnv(ctx, "GOMOD")
	if err != nil {
		return "", err
	}
	if gomod == "" || gomod == "/dev/null" {
		return "", fmt.Errorf("pluginhost: building %s: not inside the kmskeeper module", mainPackage)
	}
	out := filepath.Join(dir, "kmskeeper")
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
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
