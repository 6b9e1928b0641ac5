// Command profplugin is the kmskeeper plugin with profiles: the same
// plugin.Serve as cmd/kmskeeper's plugin mode, over the cloud backends of
// bench/internal/cloudkinds, writing a CPU profile of the whole process life
// to $KMSKEEPER_BENCH_CPUPROFILE and a mutex contention profile next to it
// (.mutex). `go run ./bench -profile dir` builds and launches it so that
// misses can be explained with go tool pprof: the CPU profile says where
// the time goes, the mutex profile whether signing waited on a lock.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"

	"github.com/kmskeeper/kmskeeper/bench/internal/cloudkinds"
	"github.com/kmskeeper/kmskeeper/plugin"
)

func main() {
	path := os.Getenv("KMSKEEPER_BENCH_CPUPROFILE")
	if path == "" {
		plugin.Serve(plugin.Options{Kinds: cloudkinds.List()})
		return
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profplugin:", err)
		os.Exit(1)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "profplugin:", err)
		os.Exit(1)
	}
	runtime.SetMutexProfileFraction(1)
	plugin.Serve(plugin.Options{Kinds: cloudkinds.List()})
	pprof.StopCPUProfile()
	if err := writeProfile("mutex", path+".mutex"); err != nil {
		fmt.Fprintln(os.Stderr, "profplugin:", err)
	}
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup(name).WriteTo(f, 0)
}
