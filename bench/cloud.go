package main

import (
	"context"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
)

// op is a cloud operation the harness slows down, independent of how each
// cloud names it.
type op int

const (
	opSign      op = iota // Sign / AsymmetricSign
	opCreate              // CreateKey / CreateCryptoKey(Version)
	opKeepAlive           // UpdateKey / UpdateCryptoKey
)

// callClass separates what a cloud bills differently: signatures, management
// calls, and authentication round trips (token endpoints, challenges).
type callClass int

const (
	classSign callClass = iota
	classManagement
	classAuth
)

// cloud is one emulator with everything the measurements need: the
// plugin_data and environment that point the binary at it, latency
// injection, request counters, its clock, foreign keys, and a raw SDK client
// for the baselines.
type cloud interface {
	// name is the backend name of the table ("azure", "gcp").
	name() string
	// pluginData returns plugin_data selecting this cloud's backend for the
	// server identity serverID, followed by extra HCL lines.
	pluginData(serverID, extra string) string
	// env is what the plugin process needs in its environment.
	env() []string
	// setLatency adds d to every later call of o (0 removes it); times > 0
	// limits it to that many calls.
	setLatency(o op, d time.Duration, times int)
	// clearLatency removes every added latency.
	clearLatency()
	// counts returns the requests per operation since the last resetCounts.
	counts() map[string]int
	resetCounts()
	// opCount is how many calls of o the cloud received since resetCounts.
	opCount(o op) int
	// classify says what kind of call an operation name of counts is.
	classify(operation string) callClass
	// advance moves the emulator clock; now reads it.
	advance(d time.Duration)
	now() time.Time
	// backend opens this cloud's kmskeeper backend in process for
	// serverID, stamping any times it writes with now (the engine's clock).
	backend(ctx context.Context, serverID string, now func() time.Time) (engine.Backend, error)
	// seedForeign puts n more keys that belong to nobody kmskeeper serves into
	// the vault or key ring the plugin uses (another application's keys).
	seedForeign(n int) error
	// listPass is how many calls one listing pass over the keys a server
	// may own takes when it owns own keys, and what they are: the whole
	// vault for Key Vault (no server-side filter, 25 keys a page); one
	// filtered ListCryptoKeys page for Cloud KMS plus one
	// ListCryptoKeyVersions per own CryptoKey (asymmetric keys have no
	// primary version, so only the versions tell the generations).
	listPass(own int) (calls int, what string)
	// sdkKey creates a key of type t with the raw SDK and returns a function
	// signing a SHA-256 digest with it, as an application using the SDK
	// directly would.
	sdkKey(ctx context.Context, t engine.KeyType) (sigFunc, error)
	close() error
}

// signFunc signs a SHA-256 digest.
type signFunc func(ctx context.Context, digest []byte) error

// sigFunc signs a SHA-256 digest and returns the signature as the cloud
// sent it.
type sigFunc func(ctx context.Context, digest []byte) ([]byte, error)

// signFunc drops the signature, for the measurements that only count.
func (f sigFunc) signFunc() signFunc {
	return func(ctx context.Context, digest []byte) error {
		_, err := f(ctx, digest)
		return err
	}
}

// startCloud starts the emulator called name.
func startCloud(ctx context.Context, name, dir string) (cloud, error) {
	switch name {
	case "azure":
		return startAzure(ctx, dir)
	case "gcp":
		return startGCP(ctx, dir)
	}
	return nil, errUnknownBackend(name)
}

type errUnknownBackend string

func (e errUnknownBackend) Error() string {
	return "unknown backend " + string(e) + " (want azure, gcp or all)"
}

// keySlug names a key type in resource names (letters, digits, hyphens).
func keySlug(t engine.KeyType) string {
	switch t {
	case engine.ECP256:
		return "ec-p256"
	case engine.ECP384:
		return "ec-p384"
	case engine.RSA2048:
		return "rsa-2048"
	case engine.RSA4096:
		return "rsa-4096"
	}
	return "unknown"
}
