package plugin

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
	configv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/common/config/v1"
)

// configService is SPIRE's Config service: Configure applies plugin_data,
// Validate only checks it.
type configService struct {
	configv1.UnimplementedConfigServer
	s *server
}

// Configure applies plugin_data. The first call opens the backend, loads the
// keys and starts the engine. A later call (SPIRE reloads plugin_data_file on
// SIGUSR1) applies what may change live and refuses the rest with
// FailedPrecondition, leaving the running engine untouched.
func (c *configService) Configure(ctx context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()

	td := req.GetCoreConfiguration().GetTrustDomain()
	cfg, err := config.Parse(req.GetHclConfiguration(), td, s.kinds)
	if err != nil {
		return nil, statusf(err, codes.InvalidArgument, "invalid configuration")
	}
	for _, w := range cfg.Warnings {
		s.log.Warn(w)
	}
	if cur := s.current.Load(); cur != nil {
		return &configv1.ConfigureResponse{}, s.reconfigure(ctx, cur, cfg, td)
	}
	return &configv1.ConfigureResponse{}, s.configure(ctx, cfg, td)
}

// configure starts an engine when none is running.
func (s *server) configure(ctx context.Context, cfg *config.Config, td string) error {
	serverID, err := cfg.ServerID(true)
	if err != nil {
		return statusf(err, codes.InvalidArgument, "server identity")
	}
	params := config.OpenParams{
		TrustDomain: td,
		ServerID:    serverID,
		Logger:      s.log.Named(cfg.Kind.Name),
		Metrics:     s.metrics,
	}
	backend, err := cfg.Backend.Open(ctx, params)
	if err != nil {
		return statusf(err, codes.FailedPrecondition, "opening %s", cfg.Kind.Name)
	}
	params.Logger = s.log.Named("predecessor")
	predecessor, err := cfg.OpenPredecessor(ctx, params)
	if err != nil {
		if cl, ok := backend.(engine.Closer); ok {
			cl.Close()
		}
		return statusf(err, codes.InvalidArgument, "opening the predecessor (migrate_from)")
	}
	live := cfg.Live()
	m, err := engine.New(engine.Options{
		Backend:             backend,
		ServerID:            serverID,
		MaxCreationsPerHour: live.MaxCreationsPerHour,
		Schedule:            live.Schedule,
		Predecessor:         predecessor,
		Logger:              s.log,
		Metrics:             s.metrics,
	})
	if err != nil {
		if cl, ok := backend.(engine.Closer); ok {
			cl.Close()
		}
		return statusf(err, codes.InvalidArgument, "starting the key manager")
	}
	if err := m.Load(ctx); err != nil {
		m.Close()
		return statusf(err, codes.Unavailable, "loading keys from %s", cfg.Kind.Name)
	}
	m.Start()
	s.current.Store(&running{manager: m, cfg: cfg, trustDomain: td, serverID: serverID})
	s.log.Info("Configured", "backend", cfg.Kind.Name, "location", cfg.Backend.Fixed(), "server_id", serverID)
	return nil
}

// reconfigure applies a new configuration to the running engine, or refuses
// it when it would move the keys or change who the plugin is.
func (s *server) reconfigure(ctx context.Context, cur *running, cfg *config.Config, td string) error {
	// create=false: a refused re-Configure must not leave a new file behind.
	serverID, err := cfg.ServerID(false)
	if err != nil {
		return statusf(err, codes.InvalidArgument, "re-configure: server identity")
	}
	if changed := fixedChanges(cur, cfg, td, serverID, cur.manager.MigrationPending()); changed != "" {
		return status.Errorf(codes.FailedPrecondition,
			"re-configure refused, %s; this cannot change while the plugin runs: restart the SPIRE server to apply it (the running configuration is kept)", changed)
	}
	backend, err := cfg.Backend.Open(ctx, config.OpenParams{
		TrustDomain: td,
		ServerID:    serverID,
		Logger:      s.log.Named(cfg.Kind.Name),
		Metrics:     s.metrics,
	})
	if err != nil {
		return statusf(err, codes.FailedPrecondition, "re-configure: opening %s (the running configuration is kept)", cfg.Kind.Name)
	}
	cur.manager.Reconfigure(cfg.Live(), backend)
	s.current.Store(&running{manager: cur.manager, cfg: cfg, trustDomain: td, serverID: serverID})
	s.log.Info("Re-configured", "backend", cfg.Kind.Name, "max_key_creations_per_hour", cfg.Common.MaxKeyCreationsPerHour)
	return nil
}

// fixedChanges describes what a new configuration changes that cannot change
// at runtime, or returns "" when nothing does. pending are the key IDs still
// served from the predecessor: the predecessor's keys are read only at start,
// so migrate_from may change at runtime only by its removal once nothing is
// served from it (what the log asks for when a migration completes).
func fixedChanges(cur *running, cfg *config.Config, td, serverID string, pending []string) string {
	was, now := cur.cfg.Predecessor.String(), cfg.Predecessor.String()
	switch {
	case was != now && was == "":
		return fmt.Sprintf("migrate_from was added (%s); the predecessor's keys are read at start", now)
	case was != now && now != "":
		return fmt.Sprintf("migrate_from changed from %s to %s; the predecessor's keys are read at start", was, now)
	case was != now && len(pending) > 0:
		slices.Sort(pending)
		return fmt.Sprintf("migrate_from was removed while key IDs %s are still served from the predecessor (%s): without it SPIRE would replace them at once (a forced CA rotation); remove migrate_from once the log says the migration is complete", strings.Join(pending, ", "), was)
	case td != cur.trustDomain:
		return fmt.Sprintf("the trust domain changed from %q to %q", cur.trustDomain, td)
	case cfg.Kind.Name != cur.cfg.Kind.Name:
		return fmt.Sprintf("the backend changed from %s to %s", cur.cfg.Kind.Name, cfg.Kind.Name)
	case cfg.Backend.Fixed() != cur.cfg.Backend.Fixed():
		return fmt.Sprintf("the %s location changed from %s to %s", cfg.Kind.Name, cur.cfg.Backend.Fixed(), cfg.Backend.Fixed())
	case serverID == "":
		return fmt.Sprintf("the server ID changed: key_identifier_file %s does not exist (running with %s)", cfg.Common.KeyIdentifierFile, cur.serverID)
	case serverID != cur.serverID:
		return fmt.Sprintf("the server ID changed from %s to %s", cur.serverID, serverID)
	}
	return ""
}

// Validate runs every check Configure runs without applying anything: it
// writes nothing (a missing key_identifier_file is reported, not created)
// and does not open the backend. The backend's server ID rules (Cloud KMS's)
// apply to key_identifier_value and to an existing key_identifier_file's ID;
// a file Configure has yet to create will hold a UUID, which every backend
// accepts. Problems come back as valid=false with one note each, so that
// SPIRE's validate command lists them one per line; warnings come back as
// notes of a valid configuration.
func (c *configService) Validate(ctx context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	s := c.s
	td := req.GetCoreConfiguration().GetTrustDomain()
	cfg, err := config.Parse(req.GetHclConfiguration(), td, s.kinds)
	if err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: problemNotes(nil, err)}, nil
	}
	notes := append([]string(nil), cfg.Warnings...)
	id, err := cfg.ServerID(false)
	switch {
	case err != nil:
		return &configv1.ValidateResponse{Valid: false, Notes: problemNotes(notes, err)}, nil
	case id == "":
		notes = append(notes, fmt.Sprintf("key_identifier_file %s does not exist yet: Configure will create it with a new server ID", cfg.Common.KeyIdentifierFile))
	}
	if cur := s.current.Load(); cur != nil {
		if changed := fixedChanges(cur, cfg, td, id, cur.manager.MigrationPending()); changed != "" && id != "" {
			notes = append(notes, "a re-configure of the running plugin would be refused: "+changed)
		}
	}
	return &configv1.ValidateResponse{Valid: true, Notes: notes}, nil
}

// problemNotes appends to notes one note per problem err holds.
func problemNotes(notes []string, err error) []string {
	for _, p := range config.List(err) {
		notes = append(notes, p.Error())
	}
	return notes
}
