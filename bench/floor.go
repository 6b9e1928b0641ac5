package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/plugin"
	"github.com/kmskeeper/kmskeeper/pluginhost"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
	configv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/common/config/v1"
	initv1 "github.com/kmskeeper/kmskeeper/proto/spire/service/private/init/v1"
)

// floorEnv makes the bench binary, when a host child launches it as its
// plugin, the boundary floor: a KeyManager plugin that pays exactly the
// process boundary kmskeeper pays (go-plugin, plugin.NewGRPCServer's gRPC
// server, the same messages) and nothing else. Its GenerateKey creates a
// key with the raw SDK; its SignData calls the raw SDK and returns the
// signature as the cloud sent it, with no engine, no verification and no
// metrics. Its value names the cloud, followed by ":verify" for the floor
// that also verifies every signature as the engine does (design rule 6), at
// the same cost: the standard-library call on a parsed key.
//
// Measurement 8 runs both beside kmskeeper so that what kmskeeper adds
// splits into the boundary (floor + its host side − raw SDK), which any
// external plugin pays; the verification (verifying floor − floor), which
// includes what its latency costs the batching of writes on both sides; and
// kmskeeper's own work (kmskeeper − verifying floor).
const floorEnv = "KMSKEEPER_BENCH_FLOOR"

// isFloorPlugin reports whether this process is the floor plugin: the
// variable is set and a go-plugin host launched it (the host child that
// launches it has the variable too, but no magic cookie).
func isFloorPlugin() bool {
	return os.Getenv(floorEnv) != "" && os.Getenv(plugin.MagicCookieKey) == plugin.MagicCookieValue
}

// floorMain serves the floor plugin until the host goes away, with a CPU
// profile of its whole life when profileEnv names a file.
func floorMain() {
	if path := os.Getenv(profileEnv); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor plugin:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	cloud, mode, _ := strings.Cut(os.Getenv(floorEnv), ":")
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: plugin.HandshakeConfig(),
		Plugins: goplugin.PluginSet{plugin.PluginSetKey: &floorPlugin{
			keys: &floorKeys{cloud: cloud, verify: mode == "verify", sign: map[string]floorKey{}},
		}},
		GRPCServer: plugin.NewGRPCServer,
		Logger:     hclog.NewNullLogger(),
	})
}

// floorPlugin registers the floor's services on go-plugin's server.
type floorPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	keys *floorKeys
}

func (p *floorPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	initv1.RegisterInitServer(s, floorInit{})
	configv1.RegisterConfigServer(s, floorConfig{})
	keymanagerv1.RegisterKeyManagerServer(s, p.keys)
	return nil
}

func (p *floorPlugin) GRPCClient(context.Context, *goplugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, fmt.Errorf("the floor plugin is not a host")
}

type floorInit struct{ initv1.UnimplementedInitServer }

func (floorInit) Init(context.Context, *initv1.InitRequest) (*initv1.InitResponse, error) {
	return &initv1.InitResponse{}, nil
}

func (floorInit) Deinit(context.Context, *initv1.DeinitRequest) (*initv1.DeinitResponse, error) {
	return &initv1.DeinitResponse{}, nil
}

type floorConfig struct {
	configv1.UnimplementedConfigServer
}

func (floorConfig) Configure(context.Context, *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	return &configv1.ConfigureResponse{}, nil
}

// floorKeys is the floor's KeyManager: one raw-SDK key per key ID.
type floorKeys struct {
	keymanagerv1.UnimplementedKeyManagerServer
	cloud  string
	verify bool

	mu   sync.RWMutex
	sign map[string]floorKey
}

// floorKey signs with the raw SDK and, in the verifying floor, verifies.
type floorKey struct {
	sign   sigFunc
	verify func() bool
}

// floorFingerprint stands for a fingerprint on the wire: as long as
// kmskeeper's (hex SHA-256), so that the messages are the same size.
var floorFingerprint = strings.Repeat("f", 64)

func (k *floorKeys) GenerateKey(ctx context.Context, req *keymanagerv1.GenerateKeyRequest) (*keymanagerv1.GenerateKeyResponse, error) {
	var t engine.KeyType
	switch req.GetKeyType() {
	case keymanagerv1.KeyType_EC_P256:
		t = engine.ECP256
	case keymanagerv1.KeyType_RSA_2048:
		t = engine.RSA2048
	default:
		return nil, status.Errorf(codes.InvalidArgument, "floor plugin: key type %v not measured", req.GetKeyType())
	}
	var key floorKey
	var err error
	if key.sign, err = sdkSigner(ctx, k.cloud, t); err != nil {
		return nil, status.Errorf(codes.Unavailable, "floor plugin: %v", err)
	}
	if k.verify {
		if key.verify, err = localVerifier(t); err != nil {
			return nil, status.Errorf(codes.Internal, "floor plugin: %v", err)
		}
	}
	k.mu.Lock()
	k.sign[req.GetKeyId()] = key
	k.mu.Unlock()
	return &keymanagerv1.GenerateKeyResponse{PublicKey: &keymanagerv1.PublicKey{
		Id: req.GetKeyId(), Type: req.GetKeyType(), Fingerprint: floorFingerprint,
	}}, nil
}

func (k *floorKeys) SignData(ctx context.Context, req *keymanagerv1.SignDataRequest) (*keymanagerv1.SignDataResponse, error) {
	k.mu.RLock()
	key, ok := k.sign[req.GetKeyId()]
	k.mu.RUnlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "floor plugin: no key %q", req.GetKeyId())
	}
	sig, err := key.sign(ctx, req.GetData())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "floor plugin: %v", err)
	}
	if key.verify != nil && !key.verify() {
		return nil, status.Error(codes.Internal, "floor plugin: verification failed")
	}
	return &keymanagerv1.SignDataResponse{Signature: sig, KeyFingerprint: floorFingerprint}, nil
}

// launchFloor starts this binary as a floor plugin against c from the
// harness, as launch starts kmskeeper, with verification when verify is
// set.
func (r *runner) launchFloor(ctx context.Context, c cloud, verify bool) (*pluginhost.Plugin, error) {
	spec := c.name()
	if verify {
		spec += ":verify"
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	p, _, err := r.start(ctx, self, append(c.env(), floorEnv+"="+spec), "")
	if err != nil {
		return nil, fmt.Errorf("floor plugin: %w", err)
	}
	return p, nil
}
