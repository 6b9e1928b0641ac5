package plugin

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

// server is the state the three services share.
type server struct {
	kinds []config.Kind
	log   hclog.Logger
	// metricsInterval is how often measurements go to the host.
	metricsInterval time.Duration

	// mu serializes Init, Configure and Deinit: they replace what the
	// KeyManager calls read through current, which they load without it.
	mu       sync.Mutex
	broker   *goplugin.GRPCBroker
	metrics  engine.Metrics
	closeMet func() error
	current  atomic.Pointer[running]
}

// running is one configured engine and what it was configured with.
type running struct {
	manager     *engine.Manager
	cfg         *config.Config
	trustDomain string
	serverID    string
}

func newServer(kinds []config.Kind, log hclog.Logger) *server {
	return &server{kinds: kinds, log: log, metrics: engine.NopMetrics{}}
}

func (s *server) setBroker(b *goplugin.GRPCBroker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broker = b
}

// manager returns the engine serving KeyManager calls, or
// FailedPrecondition before Configure.
func (s *server) manager() (*engine.Manager, error) {
	r := s.current.Load()
	if r == nil {
		return nil, errNotConfigured
	}
	return r.manager, nil
}

// shutdown closes the engine and the metrics sender: Deinit, or the host
// going away without one.
func (s *server) shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdownLocked()
}

func (s *server) shutdownLocked() {
	if r := s.current.Swap(nil); r != nil {
		if err := r.manager.Close(); err != nil {
			s.log.Warn("Closing the key manager failed", "error", err)
		}
	}
	if s.closeMet != nil {
		if err := s.closeMet(); err != nil {
			s.log.Debug("Closing the Metrics host service connection failed", "error", err)
		}
		s.closeMet = nil
	}
	s.metrics = engine.NopMetrics{}
}
