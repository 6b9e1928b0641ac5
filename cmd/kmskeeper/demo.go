package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// demoTrustDomain is the trust domain of the demo's SVIDs.
const demoTrustDomain = "example.org"

// demoPluginSettings are added to every target's plugin_data: a cleanup
// pass every second, so that the plugin retires the superseded key within
// a second of its settling (the default is a pass a day).
const demoPluginSettings = "cleanup_interval = \"1s\"\n"

// demoWait bounds each wait of the demo for the plugin's background work.
const demoWait = 10 * time.Second

// demoTarget is one cloud the demo runs against: an emulator started in
// this process, and what the plugin needs to reach it.
type demoTarget struct {
	// name is the backend's name ("azure_key_vault").
	name string
	// where describes the emulated vault or key ring for the step lines.
	where string
	// pluginData is the KeyManager's plugin_data.
	pluginData string
	// env is what the plugin process needs besides the host's environment
	// (CA file, credentials, authority).
	env []string
	// keys lists what the cloud holds, for the final table.
	keys func(ctx context.Context) ([]demoKeyRow, error)
	// listings counts the listings of the cloud so far (the plugin's
	// cleanup passes, and the demo's own keys calls).
	listings func() int
	// advance moves the emulator's clock, which dates its keys and its
	// answers, forward by d.
	advance func(d time.Duration)
	// snippet is the server.conf KeyManager block for --keep, given the
	// plugin's path and checksum.
	snippet func(pluginPath, checksum string) string
	// close stops the emulator.
	close func()
	// store names what holds the keys ("vault", "key ring") and retired
	// says what happens to a superseded key, for the step lines; empty
	// means Key Vault's words.
	store, retired string
}

// demoKeyRow is one key of the cloud as the final table shows it.
type demoKeyRow struct {
	name, state string
	tags        map[string]string
}

// demoTargets maps --backend to its set-up. Each starts its emulator on
// loopback and writes what the plugin process needs under dir.
var demoTargets = map[string]func(ctx context.Context, dir string) (*demoTarget, error){
	"azure": startAzureDemo,
	"gcp":   startGCPDemo,
}

// runDemo runs SPIRE's key flow against a local emulator, with this very
// binary launched as the KeyManager plugin exactly as SPIRE launches it.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	backend := fs.String("backend", "azure", "the cloud to emulate: azure or gcp")
	keep := fs.Bool("keep", false, "leave the emulator running afterwards and print a server.conf KeyManager block pointing at it (Ctrl-C stops it)")
	verbose := fs.Bool("verbose", false, "show the plugin's log lines")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: kmskeeper demo [flags]

Runs SPIRE's whole KeyManager flow on a local emulator, no cloud account
needed: this binary is launched as the plugin exactly as SPIRE launches it,
configured, asked for an X.509 CA key and a JWT key, used to sign a CA
certificate, an X509-SVID and a JWT-SVID (verified with go-spiffe), and
rotated. The superseded key is kept while it settles, then the demo moves
the emulator's clock past the settle period and the plugin retires it. It
exits 0 only if every step passed.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("demo: unexpected argument %q", fs.Arg(0))}
	}
	setUp, ok := demoTargets[*backend]
	if !ok {
		return usageError{fmt.Sprintf("demo: unknown --backend %q (known: azure, gcp)", *backend)}
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: finding this binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "kmskeeper-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	// Removed in every case: with --keep the demo returns only once the
	// emulator that the files (CA, env file, server ID) serve has stopped.
	defer os.RemoveAll(dir)

	d := &demo{out: stdout}
	target, err := setUp(ctx, dir)
	if !d.check("Start the emulator", err, func() string { return target.where }) {
		return d.result()
	}
	if !*keep {
		defer target.close()
	}
	var pluginStderr io.Writer
	if *verbose {
		pluginStderr = stderr
	}
	d.run(ctx, exe, target, pluginStderr)
	if err := d.result(); err != nil || !*keep {
		if *keep {
			target.close()
		}
		return err
	}
	sum, err := fileSHA256(exe)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintf(stdout, "\nThe emulator keeps running (Ctrl-C stops it). A SPIRE server can use it with:\n\n%s\n", target.snippet(exe, sum))
	<-ctx.Done()
	target.close()
	return nil
}

// demo prints one line per step and remembers whether all passed.
type demo struct {
	out    io.Writer
	failed int
}

// check prints a step's line: ✓ and the detail, or ✗ and the error.
func (d *demo) check(step string, err error, detail func() string) bool {
	if err != nil {
		d.failed++
		fmt.Fprintf(d.out, "✗ %s: %v\n", step, err)
		return false
	}
	if s := detail(); s != "" {
		fmt.Fprintf(d.out, "✓ %s: %s\n", step, s)
	} else {
		fmt.Fprintf(d.out, "✓ %s\n", step)
	}
	return true
}

func (d *demo) result() error {
	if d.failed > 0 {
		return fmt.Errorf("demo: %d step(s) failed", d.failed)
	}
	fmt.Fprintln(d.out, "All steps passed.")
	return nil
}

// run launches the plugin and runs the key flow; each step stops the run
// when it fails, since the next ones build on it.
func (d *demo) run(ctx context.Context, exe string, target *demoTarget, pluginStderr io.Writer) {
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, err := pluginhost.Start(startCtx, pluginhost.Options{Path: exe, Env: target.env, Stderr: pluginStderr})
	if !d.check("Launch the plugin as SPIRE does", err, func() string { return exe }) {
		return
	}
	defer p.Close()

	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 30*time.Second) }
	c, cancel := call()
	err = p.Configure(c, demoTrustDomain, target.pluginData+demoPluginSettings)
	cancel()
	if !d.check("Configure", err, func() string { return target.name + ", trust domain " + demoTrustDomain }) {
		return
	}

	keys := map[string]engine.PublicKey{}
	var firstCA string // the cloud's name of the first x509-CA-A key
	for _, id := range []string{"x509-CA-A", "JWT-Signer-A"} {
		c, cancel := call()
		pk, err := p.GenerateKey(c, id, engine.ECP256)
		cancel()
		if err == nil && firstCA == "" {
			firstCA, err = d.onlyKey(ctx, target)
		}
		if !d.check("GenerateKey "+id+" (EC P-256)", err, func() string { return "fingerprint " + short(pk.Fingerprint) }) {
			return
		}
		keys[id] = pk
	}

	c, cancel = call()
	ca, err := p.Signer(c, "x509-CA-A")
	cancel()
	if !d.check("Signer for x509-CA-A", err, func() string { return "" }) {
		return
	}
	caCert, err := selfSignedCA(ca)
	if !d.check("Self-signed CA certificate signed through SignData", err, func() string {
		return fmt.Sprintf("%s, serial %s", caCert.Subject.CommonName, caCert.SerialNumber.Text(16))
	}) {
		return
	}
	svidID, err := x509SVID(ca, caCert)
	if !d.check("X509-SVID signed through SignData, verified with go-spiffe", err, func() string { return svidID }) {
		return
	}

	c, cancel = call()
	jwtSigner, err := p.Signer(c, "JWT-Signer-A")
	cancel()
	if !d.check("Signer for JWT-Signer-A", err, func() string { return "" }) {
		return
	}
	sub, err := jwtSVID(jwtSigner, keys["JWT-Signer-A"].Fingerprint)
	if !d.check("JWT-SVID signed through SignData, verified with go-spiffe", err, func() string { return sub }) {
		return
	}

	c, cancel = call()
	rotated, err := p.GenerateKey(c, "x509-CA-A", engine.ECP256)
	cancel()
	listed := target.listings()
	if err == nil && rotated.Fingerprint == keys["x509-CA-A"].Fingerprint {
		err = errors.New("the new key has the old fingerprint")
	}
	if !d.check("Rotate x509-CA-A", err, func() string {
		return fmt.Sprintf("fingerprint %s -> %s", short(keys["x509-CA-A"].Fingerprint), short(rotated.Fingerprint))
	}) {
		return
	}
	c, cancel = call()
	ca2, err := p.Signer(c, "x509-CA-A")
	cancel()
	if err == nil {
		var cert2 *x509.Certificate
		if cert2, err = selfSignedCA(ca2); err == nil {
			_, err = x509SVID(ca2, cert2)
		}
	}
	if !d.check("New x509-CA-A signs a CA certificate and an X509-SVID", err, func() string { return "" }) {
		return
	}

	// The superseded key is not retired at once: the plugin's cleanup
	// passes keep it until it has settled.
	passes, err := d.waitKept(ctx, target, firstCA, listed)
	if err == nil && slices.ContainsFunc(p.Metrics(), isRetirement) {
		err = errors.New("the plugin reported a retirement before the superseded key settled")
	}
	if !d.check("The superseded x509-CA-A key is kept while it settles", err, func() string {
		return fmt.Sprintf("still enabled in the %s after %d of the plugin's cleanup passes", target.storeWord(), passes)
	}) {
		return
	}
	fmt.Fprintf(d.out, "  Why: a superseded key waits %s before it is retired, since a server starting with the same ID may be adopting it, or restoring a lease that a concurrent write dropped.\n", minutes(engine.DefaultSettle))

	step := engine.DefaultSettle + time.Minute
	target.advance(step)
	moved := time.Now()
	d.check(fmt.Sprintf("Move the emulator's clock %s ahead", minutes(step)), nil, func() string {
		return "past the settle period, as if the server had run on for that long"
	})

	rows, err := d.waitRetired(ctx, target, firstCA)
	if err == nil {
		// The plugin reports each retirement; only its cleanup pass
		// retires here (its own timer would wait the settle period).
		wctx, cancel := context.WithTimeout(ctx, demoWait)
		_, err = p.WaitMetric(wctx, isRetirement)
		cancel()
		if err != nil {
			err = fmt.Errorf("the plugin reported no retirement of a superseded key (metric kmskeeper.keys.retired): %w", err)
		}
	}
	if !d.check("The superseded x509-CA-A key is "+target.retiredWords(), err, func() string {
		return fmt.Sprintf("by the plugin's next cleanup pass, %.1f s after the clock moved", time.Since(moved).Seconds())
	}) {
		return
	}
	printKeyTable(d.out, target.storeWord(), rows)
}

// isRetirement reports whether m is the plugin's report of a superseded
// key it retired.
func isRetirement(m pluginhost.Metric) bool {
	return m.Call == "IncrCounter" && m.Name() == "kmskeeper.keys.retired" && m.Label("reason") == "superseded"
}

// onlyKey returns the name of the one enabled key the cloud holds.
func (d *demo) onlyKey(ctx context.Context, target *demoTarget) (string, error) {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	rows, err := target.keys(c)
	cancel()
	if err != nil {
		return "", err
	}
	var names []string
	for _, r := range rows {
		if r.state == "enabled" {
			names = append(names, r.name)
		}
	}
	if len(names) != 1 {
		return "", fmt.Errorf("the %s holds %d enabled keys (%s), want 1", target.storeWord(), len(names), strings.Join(names, ", "))
	}
	return names[0], nil
}

// waitKept waits until the plugin has listed the cloud twice since
// listings counted listed (so at least one whole cleanup pass ran after the
// rotation), then checks that the superseded key old is still enabled. It
// returns how many listings the plugin made. The demo lists nothing
// meanwhile, so every listing counted is the plugin's.
func (d *demo) waitKept(ctx context.Context, target *demoTarget, old string, listed int) (int, error) {
	deadline := time.Now().Add(demoWait)
	for target.listings() < listed+2 {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the plugin ran no two cleanup passes in %s (cleanup_interval = 1s)", demoWait)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	passes := target.listings() - listed
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	rows, err := target.keys(c)
	cancel()
	if err != nil {
		return 0, err
	}
	for _, r := range rows {
		if r.name == old && r.state == "enabled" {
			return passes, nil
		}
	}
	return 0, fmt.Errorf("the superseded key %s was retired at once: it must be kept until it has settled", old)
}

// waitRetired waits, at most demoWait, until the cloud no longer holds the
// superseded key old enabled, and holds the two keys in use; it returns the
// cloud's keys.
func (d *demo) waitRetired(ctx context.Context, target *demoTarget, old string) ([]demoKeyRow, error) {
	deadline := time.Now().Add(demoWait)
	for {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		rows, err := target.keys(c)
		cancel()
		if err != nil {
			return nil, err
		}
		live, oldLive := 0, false
		for _, r := range rows {
			if r.state == "enabled" {
				live++
				oldLive = oldLive || r.name == old
			}
		}
		switch {
		case !oldLive && live == 2:
			return rows, nil
		case !oldLive:
			return rows, fmt.Errorf("the %s holds %d enabled keys, want the 2 in use", target.storeWord(), live)
		case time.Now().After(deadline):
			return rows, fmt.Errorf("the %s still holds %s enabled %s after the clock moved past the settle period", target.storeWord(), old, demoWait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// minutes writes a whole number of minutes as "30 min".
func minutes(d time.Duration) string {
	return fmt.Sprintf("%d min", int(d/time.Minute))
}

// storeWord names what holds the keys.
func (t *demoTarget) storeWord() string {
	if t.store == "" {
		return "vault"
	}
	return t.store
}

// retiredWords says what happens to a superseded key.
func (t *demoTarget) retiredWords() string {
	if t.retired == "" {
		return "deleted from the vault"
	}
	return t.retired
}

// printKeyTable prints the cloud's keys with their tags.
func printKeyTable(w io.Writer, store string, rows []demoKeyRow) {
	fmt.Fprintf(w, "\nKeys in the %s:\n", store)
	width := len("NAME")
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	fmt.Fprintf(w, "  %-*s  %-8s  %s\n", width, "NAME", "STATE", "TAGS")
	for _, r := range rows {
		var tags []string
		for _, k := range sortedKeys(r.tags) {
			tags = append(tags, k+"="+r.tags[k])
		}
		fmt.Fprintf(w, "  %-*s  %-8s  %s\n", width, r.name, r.state, strings.Join(tags, " "))
	}
	fmt.Fprintln(w)
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16] + "…"
	}
	return fp
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
