package plugin

import (
	"context"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	metricsv1 "github.com/kmskeeper/kmskeeper/proto/spire/hostservice/common/metrics/v1"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/common/config/v1"
	initv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/private/init/v1"
)

// initService is SPIRE's Init service: the first call after launch and the
// last before unload.
type initService struct {
	initv1.UnimplementedInitServer
	s *server
}

// Init answers with the services this plugin serves and, when SPIRE offers
// its Metrics host service, connects to it so that the engine's measurements
// reach SPIRE's telemetry.
func (i *initService) Init(ctx context.Context, req *initv1.InitRequest) (*initv1.InitResponse, error) {
	s := i.s
	s.mu.Lock()
	defer s.mu.Unlock()

	offered := req.GetHostServiceNames()
	s.log.Debug("Init", "host_services", offered)
	if s.closeMet == nil && slices.Contains(offered, metricsv1.Metrics_ServiceDesc.ServiceName) {
		if s.broker == nil {
			return nil, status.Error(codes.Internal, "no go-plugin broker to reach the host services")
		}
		conn, err := s.broker.Dial(hostServiceID)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "dialing the host services (broker ID %d): %v", hostServiceID, err)
		}
		hm := newHostMetrics(conn, s.log, s.metricsInterval)
		s.metrics, s.closeMet = hm, hm.Close
	}
	return &initv1.InitResponse{PluginServiceNames: []string{
		keymanagerv1.KeyManager_ServiceDesc.ServiceName,
		configv1.Config_ServiceDesc.ServiceName,
	}}, nil
}

// Deinit stops the engine's background work and closes its clients; SPIRE
// sends it right before unloading the plugin.
func (i *initService) Deinit(ctx context.Context, req *initv1.DeinitRequest) (*initv1.DeinitResponse, error) {
	i.s.log.Debug("Deinit")
	i.s.shutdown()
	return &initv1.DeinitResponse{}, nil
}
