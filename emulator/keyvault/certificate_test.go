package keyvault

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
)

// TestServingCertificateNames inspects the leaf certificate each listener
// presents in a real TLS handshake and verifies it against the emulator CA
// for every name a client may use: the loopback addresses, localhost, the
// cloud host names and the extra Options.Hostnames (DNS names and IPs).
func TestServingCertificateNames(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{
		Vaults:      []VaultSpec{{Name: "first"}, {Name: "second", SKU: SKUStandard}},
		ManagedHSMs: []string{"hsm-one"},
		Hostnames:   []string{"host.docker.internal", "kv.test.example", "192.0.2.10"},
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.CAPEM()) {
		t.Fatal("CAPEM holds no certificate")
	}
	valid := []string{
		"127.0.0.1", "::1", "localhost",
		"first.vault.azure.net", "second.vault.azure.net", "anything.vault.azure.net",
		"hsm-one.managedhsm.azure.net",
		"host.docker.internal", "kv.test.example", "192.0.2.10",
	}
	invalid := []string{
		"example.com", "vault.azure.net", "a.b.vault.azure.net", "managedhsm.azure.net",
		"first.vault.azure.cn", "docker.internal", "10.0.0.1", "127.0.0.2",
	}

	addrs := map[string]string{"main": s.Addr()}
	for _, name := range s.Vaults() {
		addrs[name] = strings.TrimSuffix(strings.TrimPrefix(s.VaultURL(name), "https://"), "/")
	}
	for listener, addr := range addrs {
		t.Run(listener, func(t *testing.T) {
			var leaf *x509.Certificate
			for _, name := range valid {
				// The handshake itself verifies the chain and the name.
				conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12})
				if err != nil {
					t.Errorf("TLS handshake for %q: %v", name, err)
					continue
				}
				leaf = conn.ConnectionState().PeerCertificates[0]
				conn.Close()
			}
			if leaf == nil {
				t.Fatal("no handshake succeeded")
			}
			for _, dns := range []string{"localhost", "*.vault.azure.net", "*.managedhsm.azure.net", "host.docker.internal", "kv.test.example"} {
				if !slices.Contains(leaf.DNSNames, dns) {
					t.Errorf("DNS SANs %q lack %q", leaf.DNSNames, dns)
				}
			}
			for _, ip := range []string{"127.0.0.1", "::1", "192.0.2.10"} {
				if !slices.ContainsFunc(leaf.IPAddresses, func(a net.IP) bool { return a.Equal(net.ParseIP(ip)) }) {
					t.Errorf("IP SANs %v lack %s", leaf.IPAddresses, ip)
				}
			}
			opts := func(name string) x509.VerifyOptions {
				return x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
			}
			for _, name := range valid {
				if _, err := leaf.Verify(opts(name)); err != nil {
					t.Errorf("leaf does not verify for %q: %v", name, err)
				}
			}
			for _, name := range invalid {
				if _, err := leaf.Verify(opts(name)); err == nil {
					t.Errorf("leaf verifies for %q, which it must not cover", name)
				}
			}
			// Only the emulator CA vouches for it.
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: x509.NewCertPool(), DNSName: "localhost"}); err == nil {
				t.Error("leaf verifies without the emulator CA")
			}
		})
	}
}
