package main

import (
	"os"

	"github.com/kmskeeper/kmskeeper/plugin"
)

// isPluginMode reports whether SPIRE launched this process as a plugin:
// SPIRE sets the go-plugin magic cookie KeyManager=KeyManager.
func isPluginMode() bool { return os.Getenv(plugin.MagicCookieKey) == plugin.MagicCookieValue }

// servePlugin serves SPIRE's plugin protocol with the backends of this build
// until SPIRE goes away, and returns the process exit code.
func servePlugin() int {
	plugin.Serve(plugin.Options{Kinds: backendKinds()})
	return 0
}
