package cloudkms

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/kmskeeper/kmskeeper/emulator/internal/tlsca"
)

// With a DataDir the CA is kept in ca.pem / ca-key.pem, so that clients
// configured with the CA file keep working across restarts.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
)

func loadOrCreateCA(dir string) (*tlsca.CA, error) {
	if dir != "" {
		certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
		var keyPEM []byte
		if err == nil {
			keyPEM, err = os.ReadFile(filepath.Join(dir, caKeyFile))
		}
		switch {
		case err == nil:
			ca, err := tlsca.Parse(certPEM, keyPEM)
			if err == nil {
				return ca, nil
			}
			if !errors.Is(err, tlsca.ErrExpiring) {
				return nil, fmt.Errorf("CA in %s: %w", dir, err)
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		}
	}
	ca, err := tlsca.New("kmskeeper Cloud KMS emulator CA")
	if err != nil {
		return nil, err
	}
	if dir != "" {
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(filepath.Join(dir, caKeyFile), keyPEM); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(filepath.Join(dir, caCertFile), ca.CertPEM); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// serverNames returns what the serving certificate names: the loopback
// names, the host names of the Google endpoints the TLS port stands in for
// (Cloud KMS, the OAuth2 token endpoint, tokeninfo), the listening address
// when it is neither loopback nor unspecified, and hostnames.
func serverNames(addr net.Addr, hostnames []string) ([]string, []net.IP) {
	dns := []string{"localhost", "cloudkms.googleapis.com", "oauth2.googleapis.com", "www.googleapis.com"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ta, ok := addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() && !ta.IP.IsLoopback() {
		ips = append(ips, ta.IP)
	}
	for _, h := range hostnames {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else if h != "" {
			dns = append(dns, h)
		}
	}
	return dns, ips
}
