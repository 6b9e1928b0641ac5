package pluginhost

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/common/config/v1"
	initv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/private/init/v1"
)

// The handshake SPIRE performs with a KeyManager plugin: the plugin type is
// the magic cookie's name and value.
const (
	protocolVersion = 1
	pluginType      = "KeyManager"
	// hostServiceID is the broker ID on which SPIRE serves host services.
	hostServiceID = 1
)

// Options says how to launch a plugin binary.
type Options struct {
	// Path is the binary, as in plugin_cmd. Required.
	Path string
	// Args are plugin_args.
	Args []string
	// Env adds variables to the child's environment, after the host's own.
	Env []string
	// Checksum, when set, is the SHA-256 of the binary that go-plugin
	// verifies before launching it, as plugin_checksum does.
	Checksum []byte
	// WithoutMetrics leaves the Metrics host service out of Init's
	// host_service_names, as a host without telemetry would. The service is
	// still served on the broker, as SPIRE does; the plugin must not use it.
	WithoutMetrics bool
	// Logger receives go-plugin's host-side logs and the plugin's log lines
	// re-emitted at their level. Nil discards them (Logs still has them).
	Logger hclog.Logger
	// Stderr, when set, receives a copy of every line the plugin writes to
	// stderr (the demo shows them).
	Stderr io.Writer
}

// Plugin is a launched plugin process after Init.
type Plugin struct {
	client   *goplugin.Client
	cmd      *exec.Cmd
	conn     *grpc.ClientConn
	host     *hostPlugin
	logs     *journal[LogLine]
	services []string

	init       initv1.InitClient
	config     configv1.ConfigClient
	keyManager keymanagerv1.KeyManagerClient

	closeOnce sync.Once
}

// Start launches the binary as SPIRE does, completes the go-plugin
// handshake, serves the host services on the broker and calls Init. ctx
// bounds the launch and Init; the process lives until Close or Kill.
func Start(ctx context.Context, opts Options) (*Plugin, error) {
	if opts.Path == "" {
		return nil, errors.New("pluginhost: no plugin path")
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logs := newJournal[LogLine]()
	host := &hostPlugin{metrics: newJournal[Metric]()}

	cmd := exec.Command(opts.Path, opts.Args...)
	cmd.Env = append(os.Environ(), opts.Env...)
	cfg := &goplugin.ClientConfig{
		HandshakeConfig: goplugin.HandshakeConfig{
			ProtocolVersion:  protocolVersion,
			MagicCookieKey:   pluginType,
			MagicCookieValue: pluginType,
		},
		Plugins:          goplugin.PluginSet{pluginType: host},
		Cmd:              cmd,
		SkipHostEnv:      true, // cmd.Env already holds it, before opts.Env
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         false,
		Logger:           logger,
		Stderr:           &lineWriter{j: logs, tee: opts.Stderr},
	}
	if opts.Checksum != nil {
		cfg.SecureConfig = &goplugin.SecureConfig{Checksum: opts.Checksum, Hash: sha256.New()}
	}
	if d, ok := ctx.Deadline(); ok {
		cfg.StartTimeout = time.Until(d)
	}
	client := goplugin.NewClient(cfg)
	p := &Plugin{client: client, cmd: cmd, host: host, logs: logs}

	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("pluginhost: launching %s: %w", opts.Path, err)
	}
	raw, err := rpc.Dispense(pluginType)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("pluginhost: dispensing %s: %w", pluginType, err)
	}
	p.conn = raw.(*grpc.ClientConn)
	p.init = initv1.NewInitClient(p.conn)
	p.config = configv1.NewConfigClient(p.conn)
	p.keyManager = keymanagerv1.NewKeyManagerClient(p.conn)

	var offered []string
	if !opts.WithoutMetrics {
		offered = []string{MetricsServiceName}
	}
	resp, err := p.init.Init(ctx, &initv1.InitRequest{HostServiceNames: offered})
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("pluginhost: Init: %w", err)
	}
	p.services = resp.GetPluginServiceNames()
	return p, nil
}

// PluginServiceNames returns the service names the plugin listed in its
// Init response.
func (p *Plugin) PluginServiceNames() []string { return append([]string(nil), p.services...) }

// PID returns the plugin process's ID.
func (p *Plugin) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the plugin process has exited.
func (p *Plugin) Exited() bool { return p.client.Exited() }

// Metrics returns every call the plugin made to the Metrics host service,
// in order of arrival.
func (p *Plugin) Metrics() []Metric { return p.host.metrics.all() }

// WaitMetric waits until the plugin reports a metric that match accepts and
// returns it. Metrics travel asynchronously, so tests wait rather than read.
func (p *Plugin) WaitMetric(ctx context.Context, match func(Metric) bool) (Metric, error) {
	return p.host.metrics.wait(ctx, match)
}

// Logs returns every line the plugin wrote to stderr so far.
func (p *Plugin) Logs() []LogLine { return p.logs.all() }

// Crashes returns the stderr lines that show the plugin process panicked,
// died of a fatal runtime error or (built with -race) raced: a test that
// launched it fails on any of them, whatever else it checked.
func (p *Plugin) Crashes() []string {
	var out []string
	for _, l := range p.Logs() {
		if strings.HasPrefix(l.Raw, "panic: ") || strings.HasPrefix(l.Raw, "fatal error: ") || strings.Contains(l.Raw, "DATA RACE") {
			out = append(out, l.Raw)
		}
	}
	return out
}

// WaitLog waits until the plugin writes a log line that match accepts.
func (p *Plugin) WaitLog(ctx context.Context, match func(LogLine) bool) (LogLine, error) {
	return p.logs.wait(ctx, match)
}

// Close ends the plugin as SPIRE does on unload: Deinit (an Unimplemented
// answer is tolerated), then go-plugin's graceful shutdown, killing the
// process if it does not exit. The process is gone even when Close returns
// the Deinit error.
func (p *Plugin) Close() error {
	var err error
	p.closeOnce.Do(func() {
		if !p.client.Exited() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = p.init.Deinit(ctx, &initv1.DeinitRequest{})
			cancel()
			if status.Code(err) == codes.Unimplemented {
				err = nil // SPIRE tolerates plugins without Deinit
			}
			if err != nil {
				err = fmt.Errorf("pluginhost: Deinit: %w", err)
			}
		}
		p.client.Kill()
		p.host.stop()
	})
	return err
}

// Kill ends the plugin process with SIGKILL, as a crash or an OOM kill
// would: no Deinit, no graceful shutdown.
func (p *Plugin) Kill() error {
	err := p.cmd.Process.Kill()
	if err != nil && errors.Is(err, os.ErrProcessDone) {
		err = nil
	}
	p.closeOnce.Do(func() {
		p.client.Kill()
		p.host.stop()
	})
	return err
}
