// Package cloudkinds lists the cloud backends the benchmark harness and its
// profiling build of the plugin know, by the harness's backend names.
package cloudkinds

import (
	"github.com/kmskeeper/kmskeeper/backend/azurekv"
	"github.com/kmskeeper/kmskeeper/backend/gcpkms"
	"github.com/kmskeeper/kmskeeper/config"
)

// ByName maps "azure" and "gcp" to their configuration kinds, as
// cmd/kmskeeper/kinds.go registers them in the release binary.
func ByName() map[string]config.Kind {
	return map[string]config.Kind{"azure": azurekv.Kind(), "gcp": gcpkms.Kind()}
}

// List returns the kinds of ByName, for plugin.Options.
func List() []config.Kind {
	var out []config.Kind
	for _, name := range []string{"azure", "gcp"} {
		if k, ok := ByName()[name]; ok {
			out = append(out, k)
		}
	}
	return out
}
