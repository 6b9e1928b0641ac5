package cloudkms

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Env returns the KEY=value lines another process (the plugin binary, a
// test) needs to reach the emulator:
//
//	KMSKEEPER_GCPKMS_ENDPOINT       host:port for option.WithEndpoint / plugin_data endpoint
//	KMSKEEPER_GCPKMS_KEY_RING       the first key ring
//	KMSKEEPER_GCPKMS_TLS            "true" or "false" (plaintext needs insecure transport credentials)
//	KMSKEEPER_GCPKMS_CA_FILE        the CA file, once written with WriteCAFile
//	SSL_CERT_FILE                   the same CA file: Go's TLS stack then trusts the emulator with no code change
//	GOOGLE_APPLICATION_CREDENTIALS  the first service account file written with WriteServiceAccountFile
//	KMSKEEPER_GCPKMS_TOKENINFO_URL  base URL of the oauth2 v2 tokeninfo API
//	KMSKEEPER_GCPKMS_ADMIN_URL      the admin API, when Options.AdminListen is set
func (s *Server) Env() []string {
	s.filesMu.Lock()
	ca, sa := s.caFile, s.saFile
	s.filesMu.Unlock()
	out := []string{
		"KMSKEEPER_GCPKMS_ENDPOINT=" + s.Addr(),
		fmt.Sprintf("KMSKEEPER_GCPKMS_TLS=%v", s.ca != nil),
	}
	if len(s.opts.KeyRings) > 0 {
		out = append(out, "KMSKEEPER_GCPKMS_KEY_RING="+s.opts.KeyRings[0])
	}
	if ca != "" {
		out = append(out, "KMSKEEPER_GCPKMS_CA_FILE="+ca, "SSL_CERT_FILE="+ca)
	}
	if sa != "" {
		out = append(out, "GOOGLE_APPLICATION_CREDENTIALS="+sa)
	}
	out = append(out, "KMSKEEPER_GCPKMS_TOKENINFO_URL="+s.TokenInfoURL())
	if u := s.AdminURL(); u != "" {
		out = append(out, "KMSKEEPER_GCPKMS_ADMIN_URL="+u)
	}
	return out
}

// WriteCAFile writes the CA certificate (PEM) to path and remembers it for
// Env. It fails without TLS.
func (s *Server) WriteCAFile(path string) error {
	if s.ca == nil {
		return fmt.Errorf("gcpkms: no CA: the emulator runs without TLS")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("gcpkms: ca file: %w", err)
	}
	if err := writeFileAtomic(abs, s.ca.CertPEM); err != nil {
		return fmt.Errorf("gcpkms: write ca file: %w", err)
	}
	s.filesMu.Lock()
	s.caFile = abs
	s.filesMu.Unlock()
	return nil
}

// WriteServiceAccountFile writes the service account key file of email to
// path (mode 0600) and remembers the first one for
// GOOGLE_APPLICATION_CREDENTIALS in Env.
func (s *Server) WriteServiceAccountFile(email, path string) error {
	js, err := s.ServiceAccountJSON(email)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("gcpkms: service account file: %w", err)
	}
	if err := writeFileAtomic(abs, js); err != nil {
		return fmt.Errorf("gcpkms: write service account file: %w", err)
	}
	s.filesMu.Lock()
	if s.saFile == "" {
		s.saFile = abs
	}
	s.filesMu.Unlock()
	return nil
}

// WriteEnvFile writes Env as a file that `set -a; . file; set +a` (or
// docker --env-file, or systemd EnvironmentFile) loads.
func (s *Server) WriteEnvFile(path string) error {
	var b strings.Builder
	b.WriteString("# kmskeeper Cloud KMS emulator; load with: set -a; . " + path + "; set +a\n")
	for _, l := range s.Env() {
		b.WriteString(l + "\n")
	}
	return writeFileAtomic(path, []byte(b.String()))
}
