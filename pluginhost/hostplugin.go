package pluginhost

import (
	"context"
	"errors"
	"sync"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	metricsv1 "github.com/kmskeeper/kmskeeper/proto/spire/hostservice/common/metrics/v1"
)

// hostPlugin is go-plugin's client-side view of the plugin: when dispensed,
// it serves the host services on the broker, as SPIRE does, and hands back
// the connection to the plugin's services.
type hostPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	metrics *journal[Metric]

	mu     sync.Mutex
	server *grpc.Server
}

// GRPCServer is the plugin side, which the host never plays.
func (h *hostPlugin) GRPCServer(*goplugin.GRPCBroker, *grpc.Server) error {
	return errors.New("pluginhost is a plugin host, not a plugin")
}

// GRPCClient serves the Metrics host service on broker ID 1 and returns the
// connection to the plugin.
func (h *hostPlugin) GRPCClient(_ context.Context, broker *goplugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	ln, err := broker.Accept(hostServiceID)
	if err != nil {
		return nil, err
	}
	s := grpc.NewServer()
	metricsv1.RegisterMetricsServer(s, &metricsServer{j: h.metrics})
	h.mu.Lock()
	h.server = s
	h.mu.Unlock()
	go s.Serve(ln)
	return conn, nil
}

func (h *hostPlugin) stop() {
	h.mu.Lock()
	s := h.server
	h.server = nil
	h.mu.Unlock()
	if s != nil {
		s.Stop()
	}
}
