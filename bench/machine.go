package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// printMachine notes what the figures were measured on: they only compare
// within one run, but the reader needs to know the scale.
func printMachine(_ context.Context, w io.Writer) {
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s, %s/%s\n\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}
