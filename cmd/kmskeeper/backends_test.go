//go:build !kmskeeper_testbackend

package main

import "testing"

// TestReleaseBuildHasNoMemoryBackend guards the rule that a default build
// never contains the in-memory test backend.
func TestReleaseBuildHasNoMemoryBackend(t *testing.T) {
	for _, k := range backendKinds() {
		if k.Selector == "memory_backend" || k.Name == "memory" {
			t.Errorf("release build contains the test backend %q (%s)", k.Name, k.Selector)
		}
	}
}
