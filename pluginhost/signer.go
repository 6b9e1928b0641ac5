package pluginhost

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"time"
)

// signTimeout is the deadline SPIRE puts on every KeyManager call.
const signTimeout = 30 * time.Second

// Signer returns a crypto.Signer for the key under id, as SPIRE's server
// uses one: the public key is fetched once (ctx bounds that call), and each
// Sign calls SignData with a background context and SPIRE's 30 s deadline,
// then fails if the fingerprint in the response is not the one fetched.
// x509.CreateCertificate and JWT signing can use it directly.
func (p *Plugin) Signer(ctx context.Context, id string) (crypto.Signer, error) {
	pk, err := p.GetPublicKey(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("pluginhost: public key of %s: %w", id, err)
	}
	if pk.ID != id {
		return nil, fmt.Errorf("pluginhost: asked for key %s, plugin answered with %s", id, pk.ID)
	}
	pub, err := x509.ParsePKIXPublicKey(pk.PKIX)
	if err != nil {
		return nil, fmt.Errorf("pluginhost: public key of %s does not parse: %w", id, err)
	}
	return &signer{p: p, id: id, pub: pub, fingerprint: pk.Fingerprint}, nil
}

type signer struct {
	p           *Plugin
	id          string
	pub         crypto.PublicKey
	fingerprint string
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), signTimeout)
	defer cancel()
	sig, fp, err := s.p.SignData(ctx, s.id, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("pluginhost: signing with %s: %w", s.id, err)
	}
	if fp != s.fingerprint {
		return nil, fmt.Errorf("pluginhost: signing with %s: the plugin signed with key %s, not %s", s.id, fp, s.fingerprint)
	}
	return sig, nil
}
