package e2e

import (
	"testing"

	"github.com/kmskeeper/kmskeeper/conformance"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// TestConformanceMemory runs the conformance suite through the built binary
// on the in-memory backend.
func TestConformanceMemory(t *testing.T) {
	conformance.Run(t, func(t *testing.T) *pluginhost.Plugin {
		p, _ := startConfigured(t, pluginhost.Options{})
		return p
	}, conformance.AllCapabilities())
}
