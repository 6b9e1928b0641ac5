package plugin

import (
	"crypto"
	"crypto/rsa"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/engine"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
)

// keyTypeFromProto maps a wire key type to the engine's. An unspecified or
// unknown type is InvalidArgument: SPIRE must say which key it wants.
func keyTypeFromProto(t keymanagerv1.KeyType) (engine.KeyType, error) {
	switch t {
	case keymanagerv1.KeyType_EC_P256:
		return engine.ECP256, nil
	case keymanagerv1.KeyType_EC_P384:
		return engine.ECP384, nil
	case keymanagerv1.KeyType_RSA_2048:
		return engine.RSA2048, nil
	case keymanagerv1.KeyType_RSA_4096:
		return engine.RSA4096, nil
	case keymanagerv1.KeyType_UNSPECIFIED_KEY_TYPE:
		return engine.KeyTypeUnspecified, status.Error(codes.InvalidArgument, "key type is required")
	default:
		return engine.KeyTypeUnspecified, status.Errorf(codes.InvalidArgument, "unsupported key type %d", int32(t))
	}
}

// keyTypeToProto maps an engine key type to the wire's.
func keyTypeToProto(t engine.KeyType) keymanagerv1.KeyType {
	switch t {
	case engine.ECP256:
		return keymanagerv1.KeyType_EC_P256
	case engine.ECP384:
		return keymanagerv1.KeyType_EC_P384
	case engine.RSA2048:
		return keymanagerv1.KeyType_RSA_2048
	case engine.RSA4096:
		return keymanagerv1.KeyType_RSA_4096
	default:
		return keymanagerv1.KeyType_UNSPECIFIED_KEY_TYPE
	}
}

// hashFromProto maps a wire hash algorithm to a crypto.Hash. The protocol's
// values equal Go's constants, but each is listed so that a value outside the
// protocol (MD5, SHA-1, garbage) is refused here rather than signed.
func hashFromProto(h keymanagerv1.HashAlgorithm) (crypto.Hash, error) {
	switch h {
	case keymanagerv1.HashAlgorithm_SHA224:
		return crypto.SHA224, nil
	case keymanagerv1.HashAlgorithm_SHA256:
		return crypto.SHA256, nil
	case keymanagerv1.HashAlgorithm_SHA384:
		return crypto.SHA384, nil
	case keymanagerv1.HashAlgorithm_SHA512:
		return crypto.SHA512, nil
	case keymanagerv1.HashAlgorithm_SHA3_224:
		return crypto.SHA3_224, nil
	case keymanagerv1.HashAlgorithm_SHA3_256:
		return crypto.SHA3_256, nil
	case keymanagerv1.HashAlgorithm_SHA3_384:
		return crypto.SHA3_384, nil
	case keymanagerv1.HashAlgorithm_SHA3_512:
		return crypto.SHA3_512, nil
	case keymanagerv1.HashAlgorithm_SHA512_224:
		return crypto.SHA512_224, nil
	case keymanagerv1.HashAlgorithm_SHA512_256:
		return crypto.SHA512_256, nil
	case keymanagerv1.HashAlgorithm_UNSPECIFIED_HASH_ALGORITHM:
		return 0, status.Error(codes.InvalidArgument, "hash algorithm is required")
	default:
		return 0, status.Errorf(codes.InvalidArgument, "unsupported hash algorithm %d", int32(h))
	}
}

// signerOptsFromProto maps SignData's signer_opts to what the engine takes: a
// crypto.Hash for ECDSA and RSA PKCS#1 v1.5, an *rsa.PSSOptions for PSS. The
// salt length is passed through; the engine decides which ones it serves.
func signerOptsFromProto(req *keymanagerv1.SignDataRequest) (crypto.SignerOpts, error) {
	switch opts := req.GetSignerOpts().(type) {
	case *keymanagerv1.SignDataRequest_HashAlgorithm:
		return hashFromProto(opts.HashAlgorithm)
	case *keymanagerv1.SignDataRequest_PssOptions:
		if opts.PssOptions == nil {
			return nil, status.Error(codes.InvalidArgument, "PSS options are empty")
		}
		h, err := hashFromProto(opts.PssOptions.GetHashAlgorithm())
		if err != nil {
			return nil, err
		}
		return &rsa.PSSOptions{SaltLength: int(opts.PssOptions.GetSaltLength()), Hash: h}, nil
	case nil:
		return nil, status.Error(codes.InvalidArgument, "signer options are required (hash algorithm or PSS options)")
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unsupported signer options %T", opts)
	}
}

// publicKeyToProto maps an engine public key to the wire's.
func publicKeyToProto(k engine.PublicKey) *keymanagerv1.PublicKey {
	return &keymanagerv1.PublicKey{
		Id:          k.ID,
		Type:        keyTypeToProto(k.Type),
		PkixData:    k.PKIX,
		Fingerprint: k.Fingerprint,
	}
}
