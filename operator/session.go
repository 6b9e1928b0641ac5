package operator

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

// Session is a configuration opened for an operator command: the decoded
// plugin_data, this server's identity, and the backend built from them.
type Session struct {
	Source      *Source
	Config      *config.Config
	TrustDomain string
	// ServerID is empty when key_identifier_file does not exist yet.
	ServerID string
	Backend  engine.Backend
}

// Options are what every operator command shares.
type Options struct {
	// Kinds are the backends the configuration may select.
	Kinds []config.Kind
	// TrustDomain overrides server.conf's trust_domain.
	TrustDomain string
	// Logger receives the backends' logs; nil discards them.
	Logger hclog.Logger
	// Progress, if set, receives progress lines (a terminal's stderr).
	Progress io.Writer
	// Budget bounds each cloud call, retries included, as the plugin's
	// engine bounds its own; zero means engine.DefaultBudget. Without
	// it a cloud that keeps failing would be retried for minutes, or (on
	// Cloud KMS, whose retries stop only at a deadline) forever.
	Budget time.Duration
	// Decommissioned says the server the configuration describes has
	// stopped for good (it moved to another cloud, or was removed): keys
	// list and gc judge its keys as a departed server's, to be retired, as
	// soon as none of them shows that a process still serves it.
	Decommissioned bool
	// Offline makes validate stop after the checks that need no cloud
	// (the configuration and the identifier file), as SPIRE's own Validate
	// does: for checking configuration in CI, or rendered by a deployment
	// tool, on a machine without credentials.
	Offline bool
}

// call returns the context of one cloud call: ctx, ending when the budget
// does.
func (o Options) call(ctx context.Context) (context.Context, context.CancelFunc) {
	b := o.Budget
	if b <= 0 {
		b = engine.DefaultBudget
	}
	return context.WithTimeout(ctx, b)
}

func (o Options) logger() hclog.Logger {
	if o.Logger == nil {
		return hclog.NewNullLogger()
	}
	return o.Logger
}

func (o Options) progress(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

// parse decodes the source's plugin_data; it never writes.
func parse(src *Source, o Options) (*config.Config, string, error) {
	td := o.TrustDomain
	if td == "" {
		td = src.TrustDomain
	}
	if td == "" {
		return nil, "", fmt.Errorf("no trust domain: pass --trust-domain (or read a server.conf that sets trust_domain)")
	}
	cfg, err := config.Parse(src.PluginData, td, o.Kinds)
	if err != nil {
		return nil, td, fmt.Errorf("%s: %w", src.Origin, err)
	}
	return cfg, td, nil
}

// Open parses the source and opens its backend as this server.
func Open(ctx context.Context, src *Source, o Options) (*Session, error) {
	cfg, td, err := parse(src, o)
	if err != nil {
		return nil, err
	}
	id, err := cfg.ServerID(false)
	if err != nil {
		return nil, err
	}
	b, err := cfg.Backend.Open(ctx, config.OpenParams{TrustDomain: td, ServerID: id, Logger: o.logger()})
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", cfg.Kind.Name, err)
	}
	return &Session{Source: src, Config: cfg, TrustDomain: td, ServerID: id, Backend: b}, nil
}

// Close releases the backend's clients.
func (s *Session) Close() error {
	if c, ok := s.Backend.(engine.Closer); ok {
		return c.Close()
	}
	return nil
}

// IsTerminal reports whether f is a terminal, for progress output.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
