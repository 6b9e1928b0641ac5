package reliability

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/backend/memory"
	"github.com/kmskeeper/kmskeeper/engine"
)

const trustDomain = "example.org"

// op is a backend operation in the suite's vocabulary; each setup maps it to
// its cloud's requests.
type op string

const (
	opList      op = "List"
	opCreate    op = "Create"
	opFetch     op = "Fetch"
	opSign      op = "Sign"
	opKeepAlive op = "KeepAlive"
	opRetire    op = "Retire"
)

// faultKind is a cloud failure a setup can inject.
type faultKind string

const (
	throttledRetryAfter faultKind = "429 with Retry-After"
	throttled           faultKind = "429 without Retry-After"
	serverError         faultKind = "500"
	unavailable         faultKind = "503"
	dropped             faultKind = "dropped connection"
)

var faultKinds = []faultKind{throttledRetryAfter, throttled, serverError, unavailable, dropped}

// key is one generation in the vault, as the test sees it.
type key struct {
	engine.Generation
	Fingerprint string
	// Meta is what the cloud holds on the key besides the key material:
	// its tags (Key Vault) or its CryptoKey's labels (Cloud KMS); nil on
	// the memory backend.
	Meta map[string]string
}

// vault is one backend setup's cloud: what a test needs to configure the
// plugin against it, look into it and disturb it.
type vault interface {
	// pluginData returns plugin_data for a server, with extra lines.
	pluginData(serverID, extra string) string
	// env is added to the plugin process's environment.
	env() []string
	// keys lists every generation of the trust domain, each with the
	// leases its record holds (read from the cloud's tags or labels by
	// the test itself).
	keys(t *testing.T) []key
	// seed stores an EC P-256 generation as another server (or an older
	// process) would have.
	seed(t *testing.T, serverID, keyID string, created, updated time.Time) key
	// now is the cloud's clock; advance moves it.
	now(t *testing.T) time.Time
	advance(t *testing.T, d time.Duration)
	// hold delays the next request of op by d (after the operation took
	// effect when after is set, where the cloud allows) and returns a
	// function reporting whether a request reached the hold.
	hold(t *testing.T, o op, after bool, d time.Duration) (reached func() bool)
	// inject makes the next count requests of op fail with kind (every
	// request while count is 0, until clear).
	inject(t *testing.T, o op, kind faultKind, count int)
	// slow delays every request of op by d until clear.
	slow(t *testing.T, o op, d time.Duration)
	clear(t *testing.T)
	// faultsSpent reports whether every fault injected with a count has
	// been used up by the requests it was injected for.
	faultsSpent(t *testing.T) bool
	// absorbs reports whether the backend retries kind on o itself within
	// the call's budget (the cloud backends do, for what their SDKs and the
	// cloud's guidance call transient and safe to repeat; the memory
	// backend does not).
	absorbs(o op, kind faultKind) bool
	// fetchesAfterCreate reports whether a creation reads the new key's
	// public key with a Fetch request (Cloud KMS) rather than getting it in
	// the create's own answer.
	fetchesAfterCreate() bool
	// leaseCarriesKey reports whether the lease a process writes at Load on
	// each key it adopts answers with the key's public key (Key Vault's
	// UpdateKey does), so that the key is read separately only when that
	// write fails.
	leaseCarriesKey() bool
	// persistentCode is the gRPC code SignData returns when kind does not
	// clear within the budget.
	persistentCode(kind faultKind) codes.Code
	// elsewhere returns plugin_data for serverID in another vault or key
	// ring of the same cloud.
	elsewhere(t *testing.T, serverID string) string
	// otherIdentities returns plugin_data for serverID in the same vault
	// under other credentials (none when the backend has no identity).
	otherIdentities(t *testing.T, serverID string) []string
	// secrets lists strings that must never appear in a log line or an error
	// message: credentials, tokens, private key material.
	secrets(t *testing.T) []string
}

// setup is one backend a scenario runs against.
type setup struct {
	name string
	new  func(t *testing.T) vault
}

// setups lists the backends every scenario runs on.
func setups() []setup {
	return []setup{
		{name: "memory", new: newMemoryVault},
		{name: "azure", new: newAzureVault},
		{name: "gcp", new: newGCPVault},
	}
}

// forEachSetup runs f as a subtest per setup, the setups side by side:
// the scenarios mostly wait (holds, budgets, background passes), and each
// setup has its own emulator or state file.
func forEachSetup(t *testing.T, f func(t *testing.T, s setup)) {
	forSetups(t, setups(), f)
}

// forSetups is forEachSetup over the given setups. They all run at once,
// under the suite's own bound rather than t.Parallel's (-parallel, the CPU
// count: two setups of three at a time on 2 cores).
func forSetups(t *testing.T, ss []setup, f func(t *testing.T, s setup)) {
	tests := make([]subtest, 0, len(ss))
	for _, s := range ss {
		tests = append(tests, subtest{s.name, func(t *testing.T) { f(t, s) }})
	}
	runConcurrently(t, len(tests), tests)
}

// memoryVault is the in-memory backend shared by the plugin processes
// through a state file.
type memoryVault struct {
	path  string
	store *memory.Store
}

func newMemoryVault(t *testing.T) vault {
	path := filepath.Join(t.TempDir(), "vault.json")
	store, err := memory.OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	return &memoryVault{path: path, store: store}
}

func (v *memoryVault) pluginData(serverID, extra string) string {
	return fmt.Sprintf("memory_backend = %q\nkey_identifier_value = %q\n%s", v.path, serverID, extra)
}

func (v *memoryVault) env() []string { return nil }

func (v *memoryVault) elsewhere(t *testing.T, serverID string) string {
	return fmt.Sprintf("memory_backend = %q\nkey_identifier_value = %q\n", filepath.Join(t.TempDir(), "other.json"), serverID)
}

func (v *memoryVault) otherIdentities(*testing.T, string) []string { return nil }

func (v *memoryVault) keys(t *testing.T) []key {
	t.Helper()
	gens, err := v.store.Generations(trustDomain)
	if err != nil {
		t.Fatalf("listing the memory store: %v", err)
	}
	out := make([]key, 0, len(gens))
	for _, g := range gens {
		out = append(out, key{Generation: g, Fingerprint: fingerprint(t, g.Public)})
	}
	return out
}

func (v *memoryVault) seed(t *testing.T, serverID, keyID string, created, updated time.Time) key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := v.store.Add(trustDomain, serverID, keyID, k, created, updated)
	if err != nil {
		t.Fatal(err)
	}
	return key{
		Generation:  engine.Generation{KeyID: keyID, Ref: ref, ServerID: serverID, Created: created, Updated: updated, Public: k.Public()},
		Fingerprint: fingerprint(t, k.Public()),
	}
}

func (v *memoryVault) now(*testing.T) time.Time { return v.store.Now() }

func (v *memoryVault) advance(t *testing.T, d time.Duration) {
	t.Helper()
	if err := v.store.Advance(d); err != nil {
		t.Fatal(err)
	}
}

func (v *memoryVault) hold(t *testing.T, o op, after bool, d time.Duration) func() bool {
	t.Helper()
	f := memory.Fault{Op: string(o), Latency: d, Count: 1}
	if after {
		f.Phase = memory.PhaseAfter
	}
	v.addFault(t, f)
	n := len(v.store.Faults()) - 1
	return func() bool {
		fs := v.store.Faults()
		return n < len(fs) && fs[n].Hits > 0
	}
}

func (v *memoryVault) inject(t *testing.T, o op, kind faultKind, count int) {
	t.Helper()
	v.addFault(t, memory.Fault{Op: string(o), Code: v.persistentCode(kind), Count: count})
}

func (v *memoryVault) slow(t *testing.T, o op, d time.Duration) {
	t.Helper()
	v.addFault(t, memory.Fault{Op: string(o), Latency: d})
}

func (v *memoryVault) addFault(t *testing.T, f memory.Fault) {
	t.Helper()
	if err := v.store.InjectFault(f); err != nil {
		t.Fatal(err)
	}
}

func (v *memoryVault) clear(t *testing.T) {
	t.Helper()
	if err := v.store.ClearFaults(); err != nil {
		t.Fatal(err)
	}
}

func (v *memoryVault) faultsSpent(*testing.T) bool {
	for _, f := range v.store.Faults() {
		if f.Count > 0 && f.Hits < f.Count {
			return false
		}
	}
	return true
}

func (v *memoryVault) absorbs(op, faultKind) bool { return false }

func (v *memoryVault) fetchesAfterCreate() bool { return false }

func (v *memoryVault) leaseCarriesKey() bool { return false }

// persistentCode is the code the memory backend's injected fault carries:
// the one a cloud backend gives the same failure.
func (v *memoryVault) persistentCode(kind faultKind) codes.Code {
	switch kind {
	case throttled, throttledRetryAfter:
		return codes.ResourceExhausted
	}
	return codes.Unavailable
}

// secrets returns encodings of every private key the store holds or held
// during the test (the state file is read as raw JSON).
func (v *memoryVault) secrets(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(v.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no key was ever stored
	}
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Keys []struct {
			PKCS8 []byte `json:"pkcs8"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range st.Keys {
		out = append(out, privateMaterial(t, k.PKCS8)...)
	}
	return out
}

// privateMaterial returns the encodings of a PKCS#8 private key that a leak
// would show: the DER in base64 and hex, and the private scalar or exponent.
func privateMaterial(t *testing.T, der []byte) []string {
	t.Helper()
	out := []string{base64.StdEncoding.EncodeToString(der), base64.RawURLEncoding.EncodeToString(der), hex.EncodeToString(der)}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, hex.EncodeToString(d), base64.RawURLEncoding.EncodeToString(d), k.D.String())
	case *rsa.PrivateKey:
		out = append(out, k.D.String(), k.D.Text(16), base64.RawURLEncoding.EncodeToString(k.D.Bytes()))
	}
	return out
}

func fingerprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Fingerprint(der)
}
