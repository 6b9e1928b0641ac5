package main

import (
	"github.com/kmskeeper/kmskeeper/backend/azurekv"
	"github.com/kmskeeper/kmskeeper/backend/gcpkms"
	"github.com/kmskeeper/kmskeeper/config"
)

// releaseKinds lists the cloud backends every build contains, explicitly
// rather than registered by init(), so that what a binary can reach is read
// here. The in-memory test backend must never appear here: a release binary keeps
// keys only in a KMS (see backends.go and backends_testbackend.go).
func releaseKinds() []config.Kind {
	return []config.Kind{azurekv.Kind(), gcpkms.Kind()}
}
