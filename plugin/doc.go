// Package plugin is kmskeeper's protocol adapter: it serves SPIRE's external
// KeyManager plugin protocol over hashicorp/go-plugin and hands every call to
// the engine (package engine).
//
// SPIRE launches the binary with the go-plugin magic cookie and drives three
// services on it: Init (service names both ways, Deinit before unload),
// Config (Configure and Validate of plugin_data) and KeyManager. This package
// maps the wire types to the engine's, keeps the running engine across
// re-Configures, and forwards the engine's metrics to SPIRE's Metrics host
// service when SPIRE offers it. It holds no key semantics of its own.
package plugin
