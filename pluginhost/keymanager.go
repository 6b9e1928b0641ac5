package pluginhost

import (
	"context"
	"crypto"
	"crypto/rsa"

	"github.com/kmskeeper/kmskeeper/engine"
	keymanagerv1 "github.com/kmskeeper/kmskeeper/proto/spire/plugin/server/keymanager/v1"
)

// KeyManagerClient returns the raw client of the plugin's KeyManager
// service, for requests the typed helpers cannot express.
func (p *Plugin) KeyManagerClient() keymanagerv1.KeyManagerClient { return p.keyManager }

// GenerateKey asks for a new key under id. The public key is returned as the
// plugin sent it, unchecked: tests assert on it.
func (p *Plugin) GenerateKey(ctx context.Context, id string, t engine.KeyType) (engine.PublicKey, error) {
	resp, err := p.keyManager.GenerateKey(ctx, &keymanagerv1.GenerateKeyRequest{KeyId: id, KeyType: keyTypeToProto(t)})
	if err != nil {
		return engine.PublicKey{}, err
	}
	return publicKeyFromProto(resp.GetPublicKey()), nil
}

// GetPublicKey returns the key under id as the plugin sent it.
func (p *Plugin) GetPublicKey(ctx context.Context, id string) (engine.PublicKey, error) {
	resp, err := p.keyManager.GetPublicKey(ctx, &keymanagerv1.GetPublicKeyRequest{KeyId: id})
	if err != nil {
		return engine.PublicKey{}, err
	}
	return publicKeyFromProto(resp.GetPublicKey()), nil
}

// GetPublicKeys returns every key as the plugin sent them, in its order.
func (p *Plugin) GetPublicKeys(ctx context.Context) ([]engine.PublicKey, error) {
	resp, err := p.keyManager.GetPublicKeys(ctx, &keymanagerv1.GetPublicKeysRequest{})
	if err != nil {
		return nil, err
	}
	keys := make([]engine.PublicKey, 0, len(resp.GetPublicKeys()))
	for _, k := range resp.GetPublicKeys() {
		keys = append(keys, publicKeyFromProto(k))
	}
	return keys, nil
}

// SignData asks the key under id to sign digest. opts is a crypto.Hash or an
// *rsa.PSSOptions, sent as their numbers without checks (so tests can send
// what SPIRE never would); nil sends no signer options at all.
func (p *Plugin) SignData(ctx context.Context, id string, digest []byte, opts crypto.SignerOpts) (sig []byte, fingerprint string, err error) {
	req := &keymanagerv1.SignDataRequest{KeyId: id, Data: digest}
	switch o := opts.(type) {
	case nil:
	case *rsa.PSSOptions:
		req.SignerOpts = &keymanagerv1.SignDataRequest_PssOptions{PssOptions: &keymanagerv1.SignDataRequest_PSSOptions{
			SaltLength:    int32(o.SaltLength),
			HashAlgorithm: keymanagerv1.HashAlgorithm(o.Hash),
		}}
	default:
		req.SignerOpts = &keymanagerv1.SignDataRequest_HashAlgorithm{HashAlgorithm: keymanagerv1.HashAlgorithm(opts.HashFunc())}
	}
	resp, err := p.keyManager.SignData(ctx, req)
	if err != nil {
		return nil, "", err
	}
	return resp.GetSignature(), resp.GetKeyFingerprint(), nil
}

// keyTypeToProto maps a key type to the wire's; KeyTypeUnspecified and
// unknown types go out as UNSPECIFIED_KEY_TYPE.
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
	}
	return keymanagerv1.KeyType_UNSPECIFIED_KEY_TYPE
}

func keyTypeFromProto(t keymanagerv1.KeyType) engine.KeyType {
	switch t {
	case keymanagerv1.KeyType_EC_P256:
		return engine.ECP256
	case keymanagerv1.KeyType_EC_P384:
		return engine.ECP384
	case keymanagerv1.KeyType_RSA_2048:
		return engine.RSA2048
	case keymanagerv1.KeyType_RSA_4096:
		return engine.RSA4096
	}
	return engine.KeyTypeUnspecified
}

func publicKeyFromProto(k *keymanagerv1.PublicKey) engine.PublicKey {
	return engine.PublicKey{
		ID:          k.GetId(),
		Type:        keyTypeFromProto(k.GetType()),
		PKIX:        k.GetPkixData(),
		Fingerprint: k.GetFingerprint(),
	}
}
