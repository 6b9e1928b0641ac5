package reliability

import (
	"context"
	"crypto"
	_ "crypto/sha512" // SHA-384
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// Log messages the engine writes at the end of each background pass.
const (
	cleanupDone  = "Cleanup pass done"
	livenessDone = "Liveness pass done"
)

// harness runs plugin processes against one vault (and, for a migration
// between clouds, the vaults of the other setups it was given) and, when the
// test ends, checks everything they logged and every error they returned: no
// secret, no data race, no panic.
type harness struct {
	t *testing.T
	v vault
	// sources are further vaults the plugins reach: the old clouds of a
	// migration.
	sources []vault

	mu       sync.Mutex
	received []string // error messages and command output
	secrets  []string // test-held secrets, besides the vaults'
	plugins  []*pluginhost.Plugin
}

// newHarness starts s's vault and one vault per setup of sources.
func newHarness(t *testing.T, s setup, sources ...setup) *harness {
	t.Helper()
	h := &harness{t: t, v: s.new(t)}
	for _, src := range sources {
		h.sources = append(h.sources, src.new(t))
	}
	// Registered after the vaults, so it runs before they are torn down
	// and after every plugin was closed.
	t.Cleanup(h.scan)
	// Registered after the scan, so it runs before it.
	t.Cleanup(h.closeAll)
	return h
}

// closeAll closes every plugin still running, side by side: a clean stop
// releases the process's leases, which can take a few seconds each on a
// cloud that paces writes.
func (h *harness) closeAll() {
	h.mu.Lock()
	plugins := slices.Clone(h.plugins)
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range plugins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Close(); err != nil {
				h.t.Logf("Close: %v", err)
			}
		}()
	}
	wg.Wait()
}

// vaults returns the harness's vault followed by its sources.
func (h *harness) vaults() []vault {
	return append([]vault{h.v}, h.sources...)
}

// addSecrets adds strings that must never appear in a log line or an error
// message (private keys the test handed to the plugin).
func (h *harness) addSecrets(s ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secrets = append(h.secrets, s...)
}

// scan checks every log line and error message of the test.
func (h *harness) scan() {
	t := h.t
	var secrets []string
	for _, v := range h.vaults() {
		secrets = append(secrets, v.secrets(t)...)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	secrets = append(secrets, h.secrets...)
	var texts []string
	for _, p := range h.plugins {
		logs := p.Logs()
		for i, l := range logs {
			if strings.Contains(l.Raw, "DATA RACE") || strings.HasPrefix(l.Raw, "panic: ") || strings.HasPrefix(l.Raw, "fatal error: ") {
				// The report follows: up to the race detector's closing
				// rule, or 60 lines.
				var report []string
				for _, r := range logs[i+1 : min(len(logs), i+61)] {
					if strings.HasPrefix(r.Raw, "==================") {
						break
					}
					report = append(report, r.Raw)
				}
				t.Errorf("the plugin process reported: %s\n%s", l.Raw, strings.Join(report, "\n"))
			}
			texts = append(texts, l.Raw)
		}
	}
	texts = append(texts, h.received...)
	if leak := findSecret(texts, secrets); leak != "" {
		t.Error(leak)
	}
}

// findSecret describes the first text holding one of secrets, or returns "".
func findSecret(texts, secrets []string) string {
	for _, s := range secrets {
		if len(s) < 8 {
			continue // too short to tell a leak from a coincidence
		}
		for _, txt := range texts {
			if strings.Contains(txt, s) {
				return fmt.Sprintf("secret material (%d characters, starting %.4q) appears in: %.300s", len(s), s, txt)
			}
		}
	}
	return ""
}

// record keeps an error's message for the secrets scan and returns err.
func (h *harness) record(err error) error {
	if err != nil {
		h.keep(err.Error())
	}
	return err
}

// keep adds text the test received (a command's output) to the secrets
// scan.
func (h *harness) keep(text string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.received = append(h.received, text)
}

// env is the environment of a process reaching every vault of the harness.
func (h *harness) env() []string {
	var env []string
	for _, v := range h.vaults() {
		env = append(env, v.env()...)
	}
	if raceEnabled {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// launch starts the plugin binary as SPIRE does; it is closed when the test
// ends (unless killed or closed before).
func (h *harness) launch() *pluginhost.Plugin {
	t := h.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	p, err := pluginhost.Start(ctx, pluginhost.Options{Path: suite.binary, Env: h.env()})
	if err != nil {
		t.Fatalf("starting the plugin: %v", err)
	}
	h.mu.Lock()
	h.plugins = append(h.plugins, p)
	h.mu.Unlock()
	return p
}

// start launches a plugin and configures it as serverID with extra
// plugin_data lines.
func (h *harness) start(serverID, extra string) *pluginhost.Plugin {
	h.t.Helper()
	p := h.launch()
	if err := h.configure(p, serverID, extra); err != nil {
		h.t.Fatalf("Configure %s: %v", serverID, err)
	}
	return p
}

func (h *harness) configure(p *pluginhost.Plugin, serverID, extra string) error {
	return h.configureData(p, h.v.pluginData(serverID, extra))
}

// configureData configures p for the trust domain with plugin_data hcl.
func (h *harness) configureData(p *pluginhost.Plugin, hcl string) error {
	return h.record(p.Configure(callCtx(h.t), trustDomain, hcl))
}

// generate asks p for a new EC P-256 key under id.
func (h *harness) generate(p *pluginhost.Plugin, id string) (engine.PublicKey, error) {
	pk, err := p.GenerateKey(callCtx(h.t), id, engine.ECP256)
	return pk, h.record(err)
}

// mustGenerate is generate failing the test on error.
func (h *harness) mustGenerate(p *pluginhost.Plugin, id string) engine.PublicKey {
	h.t.Helper()
	pk, err := h.generate(p, id)
	if err != nil {
		h.t.Fatalf("GenerateKey %s: %v", id, err)
	}
	return pk
}

// sign asks p to sign with pk's ID and verifies the answer against pk: the
// fingerprint must be pk's and the signature must verify with its public key.
// The digest is SHA-384 for EC P-384 keys and SHA-256 otherwise, as SPIRE's
// certificates and JWTs use them.
func (h *harness) sign(ctx context.Context, p *pluginhost.Plugin, pk engine.PublicKey) error {
	hash := crypto.SHA256
	if pk.Type == engine.ECP384 {
		hash = crypto.SHA384
	}
	hf := hash.New()
	hf.Write([]byte("reliability " + pk.ID))
	d := hf.Sum(nil)
	sig, fp, err := p.SignData(ctx, pk.ID, d, hash)
	if err != nil {
		return h.record(err)
	}
	if fp != pk.Fingerprint {
		return fmt.Errorf("SignData %s answered fingerprint %s, want %s", pk.ID, fp, pk.Fingerprint)
	}
	pub, err := x509.ParsePKIXPublicKey(pk.PKIX)
	if err != nil {
		return fmt.Errorf("public key of %s does not parse: %w", pk.ID, err)
	}
	if err := engine.Verify(pub, d, sig, hash); err != nil {
		return fmt.Errorf("signature by %s (%s) does not verify: %w", pk.ID, pk.Fingerprint, err)
	}
	return nil
}

// mustSignAll signs with every key p serves and verifies each signature.
func (h *harness) mustSignAll(p *pluginhost.Plugin) []engine.PublicKey {
	t := h.t
	t.Helper()
	pks, err := p.GetPublicKeys(callCtx(t))
	if err != nil {
		t.Fatalf("GetPublicKeys: %v", h.record(err))
	}
	for _, pk := range pks {
		if err := h.sign(callCtx(t), p, pk); err != nil {
			t.Errorf("signing with %s: %v", pk.ID, err)
		}
	}
	return pks
}

// kill ends p with SIGKILL and waits for the process to be gone.
func kill(t *testing.T, p *pluginhost.Plugin) {
	t.Helper()
	if err := p.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitFor(t, "the killed plugin to exit", p.Exited)
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline (a stuck scenario, not a slow one).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countLogs returns how many lines with message msg p has written.
func countLogs(p *pluginhost.Plugin, msg string) int {
	n := 0
	for _, l := range p.Logs() {
		if l.Message == msg {
			n++
		}
	}
	return n
}

// waitPasses waits until p has written n more lines with message msg (the
// end of n more background passes) than it had when after was counted, and
// returns the last one.
func waitPasses(t *testing.T, p *pluginhost.Plugin, msg string, after, n int) pluginhost.LogLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	seen := 0
	l, err := p.WaitLog(ctx, func(l pluginhost.LogLine) bool {
		if l.Message == msg {
			seen++
		}
		return seen >= after+n
	})
	if err != nil {
		t.Fatalf("waiting for %d more %q lines (had %d): %v", n, msg, after, err)
	}
	return l
}

// callCtx is SPIRE's 30 s deadline for one call.
func callCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// own returns the keys of serverID, sorted by key ID then creation.
func own(keys []key, serverID string) []key {
	var out []key
	for _, k := range keys {
		if k.ServerID == serverID {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b key) int {
		if c := strings.Compare(a.KeyID, b.KeyID); c != 0 {
			return c
		}
		return a.Created.Compare(b.Created)
	})
	return out
}

// newest returns the newest generation per key ID, ordered as the engine
// orders them (creation time, then reference).
func newest(keys []key) map[string]key {
	out := make(map[string]key)
	for _, k := range keys {
		if cur, ok := out[k.KeyID]; !ok || newer(k, cur) {
			out[k.KeyID] = k
		}
	}
	return out
}

// newer reports whether a comes after b in the engine's order of
// generations: creation time, then reference (clouds that keep whole
// seconds create several generations in one).
func newer(a, b key) bool {
	return a.Created.After(b.Created) || (a.Created.Equal(b.Created) && a.Ref > b.Ref)
}

// byRef indexes keys by reference.
func byRef(keys []key) map[string]key {
	out := make(map[string]key, len(keys))
	for _, k := range keys {
		out[k.Ref] = k
	}
	return out
}

// subtest is a named test function.
type subtest struct {
	name string
	f    func(t *testing.T)
}

// runConcurrently runs each subtest under t, at most n at a time. Unlike
// t.Parallel, the bound is the suite's own, so tests that mostly wait (for
// holds and background passes) can outnumber the CPUs.
func runConcurrently(t *testing.T, n int, tests []subtest) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, st := range tests {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t.Run(st.name, st.f)
		}()
	}
	wg.Wait()
}
