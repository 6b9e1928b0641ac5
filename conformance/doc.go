// Package conformance is the conformance suite every kmskeeper backend
// passes: it drives a launched plugin binary through pluginhost, exactly as
// SPIRE would, and checks SPIRE's KeyManager semantics with the standard
// library: every key type, GetPublicKey(s), replace gives a new fingerprint,
// NotFound and InvalidArgument cases, SignData for every hash and PSS salt
// the backend supports with each signature verified, and signing from many
// goroutines while another key is being generated.
//
// A backend's test calls Run with a function returning a configured, empty
// plugin and the Capabilities of its cloud (Cloud KMS RSA keys, for example,
// sign with the one hash fixed at creation). Manager opens the same backend
// in process, under the engine, for a backend's own tests and benchmarks.
package conformance
