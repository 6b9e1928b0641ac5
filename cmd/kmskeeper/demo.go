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

	"github.com/kmskeeper/kmskeeper/keymanager"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// demoTrustDomain is the trust domain of the demo's SVIDs.
const demoTrustDomain = "example.org"

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
rotated. It exits 0 only if every step passed.

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
	err = p.Configure(c, demoTrustDomain, target.pluginData)
	cancel()
	if !d.check("Configure", err, func() string { return target.name + ", trust domain " + demoTrustDomain }) {
		return
	}

	keys := map[string]keymanager.PublicKey{}
	for _, id := range []string{"x509-CA-A", "JWT-Signer-A"} {
		c, cancel := call()
		pk, err := p.GenerateKey(c, id, keymanager.ECP256)
		cancel()
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
	rotated, err := p.GenerateKey(c, "x509-CA-A", keymanager.ECP256)
	cancel()
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

	rows, err := d.waitRetired(ctx, target, 2)
	if !d.check("The superseded x509-CA-A key is "+target.retiredWords(), err, func() string { return "" }) {
		return
	}
	printKeyTable(d.out, target.storeWord(), rows)
}

// waitRetired waits until the cloud holds want enabled keys: the engine
// deletes a superseded key in the background, right after the rotation.
func (d *demo) waitRetired(ctx context.Context, target *demoTarget, want int) ([]demoKeyRow, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		rows, err := target.keys(c)
		cancel()
		live := 0
		for _, r := range rows {
			if r.state == "enabled" {
				live++
			}
		}
		switch {
		case err != nil:
			return nil, err
		case live == want:
			return rows, nil
		case time.Now().After(deadline):
			return rows, fmt.Errorf("the %s still holds %d enabled keys, want %d", target.storeWord(), live, want)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
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
