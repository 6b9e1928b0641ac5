// Package proto holds kmskeeper's copy of SPIRE's external plugin protocol:
// the .proto files for the Init, Config, KeyManager and Metrics services, and
// the Go code generated from them (in the subdirectories, one package per
// protocol package). The SDK module SPIRE publishes is not a dependency, so
// the wire format is written down here; see README.md for how to regenerate.
package proto

//go:generate ./generate.sh
