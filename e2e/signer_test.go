package e2e

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

func sha384(t *testing.T, s string) []byte {
	t.Helper()
	h := crypto.SHA384.New()
	h.Write([]byte(s))
	return h.Sum(nil)
}

// TestSignerCreatesCertificate uses the plugin as SPIRE's CA does: a
// crypto.Signer handed to x509.CreateCertificate.
func TestSignerCreatesCertificate(t *testing.T) {
	p, _ := startConfigured(t, pluginhost.Options{})
	for _, kt := range []engine.KeyType{engine.ECP256, engine.ECP384, engine.RSA2048} {
		t.Run(kt.String(), func(t *testing.T) {
			id := "x509-CA-" + kt.String()
			if _, err := p.GenerateKey(ctx(t), id, kt); err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			signer, err := p.Signer(ctx(t), id)
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}
			tmpl := &x509.Certificate{
				SerialNumber:          big.NewInt(1),
				Subject:               pkix.Name{CommonName: "kmskeeper e2e CA"},
				NotBefore:             time.Now().Add(-time.Minute),
				NotAfter:              time.Now().Add(time.Hour),
				IsCA:                  true,
				BasicConstraintsValid: true,
				KeyUsage:              x509.KeyUsageCertSign,
			}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
			if err != nil {
				t.Fatalf("CreateCertificate: %v", err)
			}
			cert, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := cert.CheckSignatureFrom(cert); err != nil {
				t.Errorf("self-signed certificate does not verify: %v", err)
			}
		})
	}
}
