package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// profileEnv names the file the profiling plugin build writes its CPU
// profile to (see bench/profplugin).
const profileEnv = "KMSKEEPER_BENCH_CPUPROFILE"

// profilePath is where the plugin process called name writes its profile.
func (r *runner) profilePath(name string) string {
	return filepath.Join(r.profileDir, name+".pprof")
}

// buildProfiling builds bench/profplugin: the plugin's main with a CPU
// profile written for the life of the process.
func buildProfiling(ctx context.Context, dir string, race bool) (string, error) {
	out := filepath.Join(dir, "kmskeeper-profiling")
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/kmskeeper/kmskeeper/bench/profplugin")
	cmd := exec.CommandContext(ctx, "go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}
