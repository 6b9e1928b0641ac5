package gcpkms

import (
	"fmt"
	"net"
	"strings"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/internal/loopback"
)

// endpoint is where the plugin reaches Cloud KMS.
type endpoint struct {
	// address is host:port ("" for the service's default).
	address string
	// loopback is true for 127.0.0.0/8, ::1 and localhost.
	loopback bool
	// plaintext is true for a loopback endpoint without https://.
	plaintext bool
}

// parseEndpoint reads the endpoint setting: "" (the public service),
// "host[:port]" or "https://host[:port]" (TLS, port 443 by default), or a
// loopback address (127.0.0.1:9010, localhost:9010, [::1]:9010), which is
// plaintext unless written with https://, as a local emulator usually is.
// http:// is accepted for loopback addresses only: nothing but a loopback
// connection may carry keys' requests and credentials unencrypted. An
// endpoint carrying user information or a query is refused first, and that
// error shows it only in config.RedactURL's form: they may hold a secret.
func parseEndpoint(s string) (endpoint, error) {
	if s == "" {
		return endpoint{}, nil
	}
	if shown := config.RedactURL(s); shown != s {
		return endpoint{}, fmt.Errorf("endpoint %q carries credentials (user:password@), a query (?...) or a fragment (#...), which are not allowed and are not repeated here: write host:port or https://host:port; credentials come from service_account_file or Application Default Credentials", shown)
	}
	rest, scheme := s, ""
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i], s[i+3:]
	}
	rest = strings.TrimSuffix(rest, "/")
	if scheme != "" && scheme != "http" && scheme != "https" {
		return endpoint{}, fmt.Errorf("endpoint %q: scheme %q is not supported; write host:port, https://host:port, or for a local emulator 127.0.0.1:port", s, scheme)
	}
	if rest == "" || strings.ContainsAny(rest, "/?# ") {
		return endpoint{}, fmt.Errorf("endpoint %q is not host:port (a path, query or space is not allowed)", s)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		// No port: the default HTTPS port.
		host, port = strings.Trim(rest, "[]"), "443"
	}
	if host == "" {
		return endpoint{}, fmt.Errorf("endpoint %q has no host", s)
	}
	isLocal := loopback.Host(host)
	switch {
	case scheme == "http" && !isLocal:
		return endpoint{}, fmt.Errorf("endpoint %q is plaintext (http://) and not a loopback address: only a local emulator on 127.0.0.1, ::1 or localhost may be reached without TLS", s)
	case scheme == "" && isLocal && err != nil:
		return endpoint{}, fmt.Errorf("endpoint %q is a loopback address without a port: write host:port (for example 127.0.0.1:9010)", s)
	}
	return endpoint{address: net.JoinHostPort(host, port), loopback: isLocal, plaintext: isLocal && scheme != "https"}, nil
}

// String describes the endpoint for Fixed and logs.
func (e endpoint) String() string {
	switch {
	case e.address == "":
		return "cloudkms.googleapis.com (default)"
	case e.plaintext:
		return e.address + " (plaintext, loopback)"
	default:
		return e.address + " (TLS)"
	}
}
