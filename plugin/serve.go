package plugin

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/kmskeeper/kmskeeper/config"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/common/config/v1"
	initv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/private/init/v1"
)

// The go-plugin handshake SPIRE uses for KeyManager plugins: the plugin type
// is both the magic cookie's name and its value.
const (
	ProtocolVersion  = 1
	MagicCookieKey   = "KeyManager"
	MagicCookieValue = "KeyManager"
	// PluginSetKey is the name the plugin registers itself under.
	PluginSetKey = "KeyManager"
)

// hostServiceID is the go-plugin broker ID on which SPIRE serves its host
// services to the plugin.
const hostServiceID = 1

// Options configures Serve.
type Options struct {
	// Kinds lists the backends plugin_data can select; the build decides
	// which ones exist.
	Kinds []config.Kind
	// Logger replaces the JSON logger on stderr that SPIRE expects. Tests
	// use it; leave it nil in the binary.
	Logger hclog.Logger
	// MetricsInterval is how often the aggregated measurements go to SPIRE's
	// Metrics host service; 0 is DefaultMetricsInterval.
	MetricsInterval time.Duration
}

// Serve serves the plugin protocol on go-plugin until the host goes away.
// It must only be called when SPIRE launched the process (the magic cookie
// is set): go-plugin owns stdout for its handshake line.
func Serve(opts Options) {
	log := opts.Logger
	if log == nil {
		// Captured before go-plugin redirects os.Stderr, so that the lines go
		// to the real stderr that SPIRE parses.
		log = hclog.New(&hclog.LoggerOptions{
			Level:      hclog.Trace,
			Output:     os.Stderr,
			JSONFormat: true,
		})
	}
	s := newServer(opts.Kinds, log)
	s.metricsInterval = opts.MetricsInterval
	defer s.shutdown()
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: HandshakeConfig(),
		Plugins:         goplugin.PluginSet{PluginSetKey: &grpcPlugin{server: s}},
		GRPCServer:      NewGRPCServer,
		Logger:          log,
	})
}

// NewGRPCServer is the gRPC server go-plugin serves the plugin on, with the
// options tuned for SPIRE's traffic. It is exported so that the benchmark's
// boundary-floor plugin pays exactly the boundary kmskeeper pays.
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, serverOptions()...)...)
}

// serverOptions tune the plugin's gRPC server for SPIRE's traffic: many
// small unary calls over one local connection.
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// A fixed flow-control window turns off grpc's bandwidth-delay
		// estimation, which pings the client on data frames: on a local
		// socket those pings buy nothing and cost a frame each way.
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(1 << 20),
		// One write buffer per flush, returned to a pool, rather than one
		// held per connection.
		grpc.SharedWriteBuffer(true),
		// Calls run on long-lived workers instead of a new goroutine each:
		// a SignData handler's stack (cloud SDK, TLS, verification) grows
		// well past a new goroutine's, and the copying showed as 5 to 9 %
		// of the plugin's CPU. Past streamWorkers concurrent calls, grpc
		// falls back to a goroutine per call.
		grpc.NumStreamWorkers(streamWorkers),
	}
}

// streamWorkers is how many concurrent calls the plugin serves on
// long-lived goroutines: SPIRE's signing concurrency on a busy server.
const streamWorkers = 32

// HandshakeConfig returns the handshake SPIRE performs with a KeyManager.
func HandshakeConfig() goplugin.HandshakeConfig {
	return goplugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// grpcPlugin registers the plugin's services on go-plugin's gRPC server.
type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	server *server
}

// GRPCServer registers Init, Config and KeyManager, and keeps the broker to
// reach the host services after Init.
func (p *grpcPlugin) GRPCServer(broker *goplugin.GRPCBroker, s *grpc.Server) error {
	p.server.setBroker(broker)
	initv1.RegisterInitServer(s, &initService{s: p.server})
	configv1.RegisterConfigServer(s, &configService{s: p.server})
	keymanagerv1.RegisterKeyManagerServer(s, &keyManagerService{s: p.server})
	return nil
}

// GRPCClient is the host side, which this binary never plays.
func (p *grpcPlugin) GRPCClient(context.Context, *goplugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("kmskeeper is a plugin, not a plugin host")
}
