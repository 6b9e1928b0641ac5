//go:build kmskeeper_testbackend

package main

import (
	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/config"
)

// backendKinds lists the cloud backends plus the in-memory backend
// (memory_backend = "<name>"), which only a binary built with
// -tags kmskeeper_testbackend contains: the end-to-end tests use it to drive
// the real protocol through the built binary without a cloud.
func backendKinds() []config.Kind {
	return append(releaseKinds(), memory.Kind())
}
