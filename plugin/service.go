package plugin

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
)

// keyManagerService is SPIRE's KeyManager service. It maps the wire types
// and passes the engine's errors through: they already carry the gRPC code
// that says what went wrong.
type keyManagerService struct {
	keymanagerv1.UnimplementedKeyManagerServer
	s *server
}

// GenerateKey creates a key under an ID, replacing the one there.
func (k *keyManagerService) GenerateKey(ctx context.Context, req *keymanagerv1.GenerateKeyRequest) (*keymanagerv1.GenerateKeyResponse, error) {
	if req.GetKeyId() == "" {
		return nil, status.Error(codes.InvalidArgument, "key ID is required")
	}
	t, err := keyTypeFromProto(req.GetKeyType())
	if err != nil {
		return nil, err
	}
	m, err := k.s.manager()
	if err != nil {
		return nil, err
	}
	pub, err := m.GenerateKey(ctx, req.GetKeyId(), t)
	if err != nil {
		return nil, passThrough(err)
	}
	return &keymanagerv1.GenerateKeyResponse{PublicKey: publicKeyToProto(pub)}, nil
}

// GetPublicKey returns the key under an ID; NotFound when there is none.
func (k *keyManagerService) GetPublicKey(ctx context.Context, req *keymanagerv1.GetPublicKeyRequest) (*keymanagerv1.GetPublicKeyResponse, error) {
	if req.GetKeyId() == "" {
		return nil, status.Error(codes.InvalidArgument, "key ID is required")
	}
	m, err := k.s.manager()
	if err != nil {
		return nil, err
	}
	pub, err := m.GetPublicKey(ctx, req.GetKeyId())
	if err != nil {
		return nil, passThrough(err)
	}
	return &keymanagerv1.GetPublicKeyResponse{PublicKey: publicKeyToProto(pub)}, nil
}

// GetPublicKeys returns every key served.
func (k *keyManagerService) GetPublicKeys(ctx context.Context, req *keymanagerv1.GetPublicKeysRequest) (*keymanagerv1.GetPublicKeysResponse, error) {
	m, err := k.s.manager()
	if err != nil {
		return nil, err
	}
	pubs, err := m.GetPublicKeys(ctx)
	if err != nil {
		return nil, passThrough(err)
	}
	resp := &keymanagerv1.GetPublicKeysResponse{PublicKeys: make([]*keymanagerv1.PublicKey, 0, len(pubs))}
	for _, p := range pubs {
		resp.PublicKeys = append(resp.PublicKeys, publicKeyToProto(p))
	}
	return resp, nil
}

// SignData signs a digest with the key under an ID and returns the
// fingerprint of the key that signed.
func (k *keyManagerService) SignData(ctx context.Context, req *keymanagerv1.SignDataRequest) (*keymanagerv1.SignDataResponse, error) {
	if req.GetKeyId() == "" {
		return nil, status.Error(codes.InvalidArgument, "key ID is required")
	}
	opts, err := signerOptsFromProto(req)
	if err != nil {
		return nil, err
	}
	m, err := k.s.manager()
	if err != nil {
		return nil, err
	}
	sig, fp, err := m.SignData(ctx, req.GetKeyId(), req.GetData(), opts)
	if err != nil {
		return nil, passThrough(err)
	}
	return &keymanagerv1.SignDataResponse{Signature: sig, KeyFingerprint: fp}, nil
}
