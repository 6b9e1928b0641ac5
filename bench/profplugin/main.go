// Command profplugin is the kmskeeper plugin with a CPU profile: the same
// plugin.Serve as cmd/kmskeeper's plugin mode, over the cloud backends of
// bench/internal/cloudkinds, writing a CPU profile of the whole process
// life to $KMSKEEPER_BENCH_CPUPROFILE. `go run ./bench -profile dir` builds
// and launches it so that misses can be explained with go tool pprof.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/kmskeeper/kmskeeper/bench/internal/cloudkinds"
	"github.com/kmskeeper/kmskeeper/plugin"
)

func main() {
	if path := os.Getenv("KMSKEEPER_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profplugin:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "profplugin:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	plugin.Serve(plugin.Options{Kinds: cloudkinds.List()})
}
