//go:build !kmskeeper_testbackend

package main

import "github.com/kmskeeper/kmskeeper/config"

// backendKinds lists the backends plugin_data can select in a release build:
// the cloud backends of releaseKinds (kinds.go), nothing else.
func backendKinds() []config.Kind {
	return releaseKinds()
}
