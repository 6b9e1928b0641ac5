package tlsca

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"
)

func TestServerCertVerifies(t *testing.T) {
	ca, err := New("test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCert("localhost", []string{"localhost", "*.vault.azure.net"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM) {
		t.Fatal("CertPEM is not a PEM certificate")
	}
	for _, name := range []string{"localhost", "myvault.vault.azure.net", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "cloudkms.googleapis.com", Roots: pool}); err == nil {
		t.Error("a name the certificate does not carry verified")
	}
}

func TestParse(t *testing.T) {
	ca, err := New("test CA")
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	sec1DER, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})
	other, _ := New("other CA")
	otherKey, _ := other.KeyPEM()

	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr string
	}{
		{"PKCS#8 key", ca.CertPEM, pkcs8, ""},
		{"SEC 1 key", ca.CertPEM, sec1, ""},
		{"another CA's key", ca.CertPEM, otherKey, "does not match"},
		{"not PEM", []byte("garbage"), pkcs8, "not PEM"},
		{"certificate as key", ca.CertPEM, ca.CertPEM, "stored CA key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.cert, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.Cert.Equal(ca.Cert) || !got.key.Equal(ca.key) {
				t.Error("parsed CA differs from the stored one")
			}
		})
	}
}
