package operator

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

// ProbeServerID is the server ID of validate --probe's throwaway keys. It is
// fixed, so repeated probes reuse one Cloud KMS CryptoKey, and it names no
// real server, so a probe key whose retirement failed looks like an
// abandoned server's key and is retired by the plugins' cleanup.
const ProbeServerID = "kmskeeper-probe"

// Check is one step of validate.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	// Fix says what to do when the check failed.
	Fix string `json:"fix,omitempty"`
}

// Report is validate's result.
type Report struct {
	Checks []Check `json:"checks"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

func (r *Report) add(c Check) bool {
	r.Checks = append(r.Checks, c)
	return c.OK
}

// Validate runs every configuration check of the plugin, then read-only
// checks of the cloud (credentials, reachability, list permission), and with
// probe a create-sign-verify-retire cycle for each key type SPIRE will ask
// for. Probe keys are retired even when a step fails.
func Validate(ctx context.Context, src *Source, o Options, probe bool) *Report {
	r := &Report{}
	cfg, td, err := parse(src, o)
	if err != nil {
		// Every problem of the configuration, one check each, so that one
		// run lists all there is to fix; the cloud cannot be asked with a
		// configuration the plugin would refuse.
		problems := config.List(err)
		for _, p := range problems {
			r.add(result("configuration", p, "fix the key named in the message; `kmskeeper validate --help` lists where the configuration is read from"))
		}
		r.add(Check{Name: "cloud checks", Detail: fmt.Sprintf("not run: the configuration has %d problem(s)", len(problems)), Fix: "fix the configuration problems above, then run validate again"})
		return r
	}
	r.add(Check{Name: "configuration", OK: true})
	r.Checks[len(r.Checks)-1].Detail = fmt.Sprintf("%s in %s, trust domain %s", cfg.Kind.Name, cfg.Backend.Fixed(), td)
	for _, w := range cfg.Warnings {
		r.add(Check{Name: "configuration warning", OK: true, Detail: w})
	}

	id, err := cfg.ServerID(false)
	c := result("server identity", err, "fix or remove the identifier file named in the message")
	switch {
	case err != nil:
	case id == "":
		c.Detail = fmt.Sprintf("%s does not exist yet; the plugin creates it at first start", cfg.Common.KeyIdentifierFile)
	default:
		c.Detail = "server ID " + id
	}
	if !r.add(c) || o.Offline {
		return r
	}

	o.progress("Obtaining credentials and opening %s ...", cfg.Backend.Fixed())
	b, err := cfg.Backend.Open(ctx, config.OpenParams{TrustDomain: td, ServerID: id, Logger: o.logger()})
	if !r.add(result("credentials and client", err, "check the credentials named in the message (see docs/troubleshooting.md)")) {
		return r
	}
	defer closeBackend(b)

	o.progress("Listing keys (reachability and list permission) ...")
	cctx, cancel := o.call(ctx)
	gens, err := b.ListGenerations(cctx)
	cancel()
	c = result("list keys", err, fixFor(err))
	if err == nil {
		own := 0
		for _, g := range gens {
			if g.ServerID == id {
				own++
			}
		}
		c.Detail = fmt.Sprintf("%d keys of trust domain %s, %d of them this server's", len(gens), td, own)
	}
	if !r.add(c) {
		return r
	}

	if cfg.Predecessor != nil {
		p, err := cfg.OpenPredecessor(ctx, config.OpenParams{TrustDomain: td, Logger: o.logger()})
		c := result("predecessor", err, "fix migrate_from as the message says")
		if err == nil {
			cctx, cancel := o.call(ctx)
			keys, kerr := p.Keys(cctx)
			cancel()
			c = result("predecessor", kerr, fixFor(kerr))
			c.Detail = fmt.Sprintf("%s holds %d keys", p.Name(), len(keys))
			if cl, ok := p.(engine.Closer); ok {
				cl.Close()
			}
		}
		r.add(c)
	}

	if !probe {
		return r
	}
	pb, err := cfg.Backend.Open(ctx, config.OpenParams{TrustDomain: td, ServerID: ProbeServerID, Logger: o.logger()})
	if !r.add(result("probe client", err, "check the credentials named in the message")) {
		return r
	}
	defer closeBackend(pb)
	for _, kt := range src.KeyTypes {
		t, err := ParseKeyType(kt)
		if err != nil {
			r.add(Check{Name: "probe " + kt, Detail: err.Error(), Fix: "set ca_key_type / jwt_key_type to one of ec-p256, ec-p384, rsa-2048, rsa-4096"})
			continue
		}
		o.progress("Probing %s: create, sign, verify, retire ...", t)
		r.add(probeOne(ctx, pb, b, t, o))
	}
	return r
}

// probeOne creates a throwaway key through pb, signs, verifies and retires
// it; the key is retired even when signing fails. b is the backend opened
// as this server, through which what is left of the probe key is retired
// (see retireProbeKey).
func probeOne(ctx context.Context, pb, b engine.Backend, t engine.KeyType, o Options) (c Check) {
	c.Name = "probe " + t.String()
	id := "probe-" + strings.ToLower(t.String())
	started := time.Now()
	cctx, cancel := o.call(ctx)
	g, err := pb.Create(cctx, engine.CreateRequest{KeyID: id, Type: t, Lease: engine.Lease{Holder: "probe", Renewed: time.Now().Truncate(time.Millisecond), Pending: true}})
	cancel()
	if err != nil {
		c = failed(c, "create", err)
		// A creation can fail after the cloud made the key (Cloud KMS makes
		// the CryptoKey and its first version before the public key is
		// read): retire what it left.
		if left, rerr := retireFailedProbe(context.WithoutCancel(ctx), pb, b, id, started, o); rerr != nil {
			c.Detail += fmt.Sprintf("; the failed creation left %s, which could not be retired: %v (delete it by hand, or the plugins' cleanup retires it after the stale period)", left, rerr)
		}
		return c
	}
	defer func() {
		rctx := context.WithoutCancel(ctx)
		cctx, cancel := o.call(rctx)
		err := pb.Retire(cctx, g)
		cancel()
		if err == nil {
			err = retireProbeKey(rctx, b, g, o)
		}
		if err != nil {
			c.OK = false
			c.Detail += fmt.Sprintf("; retiring the probe key %s failed: %v", g.Ref, err)
			c.Fix = fixFor(err) + fmt.Sprintf(" (the probe key %s is left behind; the plugins' cleanup retires it after the stale period, or delete it by hand)", g.Ref)
		}
	}()
	h := crypto.SHA256
	if t == engine.ECP384 {
		h = crypto.SHA384
	}
	w := h.New()
	w.Write([]byte("kmskeeper validate --probe"))
	digest := w.Sum(nil)
	cctx, cancel = o.call(ctx)
	sig, err := pb.Sign(cctx, g, digest, h)
	cancel()
	return finishProbe(c, g, digest, sig, h, err)
}

// retireProbeKey retires what a listing still shows of the retired probe
// generation g. Retiring a Cloud KMS generation destroys its version but
// keeps its CryptoKey, labelled active, which every server of the trust
// domain would list as another server's live key until its stale period
// ends. Listed through b (this server's backend) it is another server's key,
// and is retired as cleanup retires one. Only the key holding g is touched;
// if another validate run is probing with it at the same moment (Cloud KMS
// probe keys are shared), the backend refuses with Aborted and that run
// retires it.
func retireProbeKey(ctx context.Context, b engine.Backend, g engine.Generation, o Options) error {
	cctx, cancel := o.call(ctx)
	gens, err := b.ListGenerations(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("listing keys after retiring probe key %s: %w", g.Ref, err)
	}
	for _, l := range gens {
		if l.ServerID != ProbeServerID || (l.Ref != g.Ref && !strings.HasPrefix(g.Ref, l.Ref+"/")) {
			continue
		}
		cctx, cancel := o.call(ctx)
		err := b.Retire(cctx, l)
		cancel()
		if err != nil && status.Code(err) != codes.Aborted {
			return fmt.Errorf("retiring %s, the key of probe key %s: %w", l.Ref, g.Ref, err)
		}
	}
	return nil
}

// retireFailedProbe retires the generations of probe key id that a failed
// creation started at started may have left, listed through the probe
// backend pb, and then what a listing through b still shows of them (see
// retireProbeKey). It returns what it could not retire.
func retireFailedProbe(ctx context.Context, pb, b engine.Backend, id string, started time.Time, o Options) (string, error) {
	cctx, cancel := o.call(ctx)
	gens, err := pb.ListGenerations(cctx)
	cancel()
	if err != nil {
		return "anything of probe key " + id, fmt.Errorf("listing keys after the failed creation of probe key %s: %w", id, err)
	}
	for _, g := range gens {
		// Clocks differ: a minute of slack, as the engine allows.
		if g.ServerID != ProbeServerID || g.KeyID != id || g.Created.Before(started.Add(-time.Minute)) {
			continue
		}
		cctx, cancel := o.call(ctx)
		err := pb.Retire(cctx, g)
		cancel()
		if err == nil {
			err = retireProbeKey(ctx, b, g, o)
		}
		if err != nil {
			return g.Ref, fmt.Errorf("retiring %s, left by the failed creation of probe key %s: %w", g.Ref, id, err)
		}
	}
	return "", nil
}

func finishProbe(c Check, g engine.Generation, digest, sig []byte, opts crypto.SignerOpts, err error) Check {
	if err != nil {
		return failed(c, "sign", err)
	}
	if err := engine.Verify(g.Public, digest, sig, opts); err != nil {
		c.Detail = fmt.Sprintf("signature by %s does not verify: %v", g.Ref, err)
		c.Fix = "the cloud returned a bad signature; report it with the key reference"
		return c
	}
	c.OK = true
	c.Detail = fmt.Sprintf("created %s, signed, verified, retired", g.Ref)
	return c
}

func failed(c Check, step string, err error) Check {
	c.Detail = fmt.Sprintf("%s: %v", step, err)
	c.Fix = fixFor(err)
	return c
}

func result(name string, err error, fix string) Check {
	if err != nil {
		return Check{Name: name, Detail: err.Error(), Fix: fix}
	}
	return Check{Name: name, OK: true}
}

// fixFor says what to do about a cloud error, by its code.
func fixFor(err error) string {
	if err == nil {
		return ""
	}
	switch status.Code(err) {
	case codes.PermissionDenied:
		return "grant the role or permission named in the message to the plugin's identity"
	case codes.FailedPrecondition:
		return "change the vault, key ring or key_protection as the message says"
	case codes.ResourceExhausted:
		return "the cloud is throttling; try again later or raise the quota"
	case codes.Unavailable, codes.DeadlineExceeded:
		return "check that the vault or endpoint is reachable from this machine (network, DNS, private link, firewall)"
	case codes.Unauthenticated:
		return "check the credentials: tenant, client ID and secret, or the service account file"
	case codes.NotFound:
		return "check that the vault or key ring exists and the name is right"
	}
	return "see docs/troubleshooting.md for this message"
}

func closeBackend(b engine.Backend) {
	if c, ok := b.(engine.Closer); ok {
		c.Close()
	}
}

// ParseKeyType maps SPIRE's server.conf key type names to key types.
func ParseKeyType(s string) (engine.KeyType, error) {
	switch strings.ToLower(s) {
	case "ec-p256":
		return engine.ECP256, nil
	case "ec-p384":
		return engine.ECP384, nil
	case "rsa-2048":
		return engine.RSA2048, nil
	case "rsa-4096":
		return engine.RSA4096, nil
	}
	return engine.KeyTypeUnspecified, fmt.Errorf("unknown key type %q", s)
}

// PrintReport writes the report as a table or JSON.
func PrintReport(w io.Writer, r *Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			OK bool `json:"ok"`
			*Report
		}{r.OK(), r})
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		mark := "ok"
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, c.Name, c.Detail)
		if !c.OK && c.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.OK() {
		_, err := fmt.Fprintln(w, "All checks passed.")
		return err
	}
	_, err := fmt.Fprintln(w, "Some checks failed.")
	return err
}
