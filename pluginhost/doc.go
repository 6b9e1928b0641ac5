// Package pluginhost is the host side of SPIRE's external KeyManager plugin
// protocol. It launches a built kmskeeper binary exactly as a SPIRE server
// does (go-plugin client with the KeyManager magic cookie, gRPC only, no
// AutoMTLS, Init offering the Metrics host service on broker ID 1) and
// drives it: Configure, Validate, the KeyManager calls, Deinit, and a kill -9
// for crash tests.
//
// The demo, the end-to-end tests and the benchmarks use it so that they
// exercise the binary SPIRE would run, not an in-process shortcut. It keeps
// its own copy of the protocol constants rather than importing package
// plugin, so a mistake on one side is caught by the other.
package pluginhost
