// Package e2e holds the end-to-end tests of kmskeeper: they build the binary
// (with -tags kmskeeper_testbackend, which adds the in-memory backend),
// launch it with pluginhost exactly as SPIRE does, and drive the protocol:
// the conformance suite, Init, Configure, Validate, re-Configure, Deinit,
// metrics, logs and a crash.
package e2e
