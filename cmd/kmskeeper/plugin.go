package main

import "os"

// isPluginMode reports whether SPIRE launched this process as a plugin:
// SPIRE sets the go-plugin magic cookie KeyManager=KeyManager.
func isPluginMode() bool { return os.Getenv("KeyManager") == "KeyManager" }

func servePlugin() int { return 1 }
