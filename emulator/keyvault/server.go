package keyvault

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/internal/tlsca"
)

// Server is a running emulator. Create it with Start and stop it with Close
// (or by cancelling Start's context).
type Server struct {
	opts  Options
	ca    *tlsca.CA
	cert  tls.Certificate
	token tokenIssuer
	// federated signs the external tokens of IssueFederatedToken: it stands
	// for a federated credential's issuer (an AKS cluster's OIDC issuer).
	federated tokenIssuer

	clientSecret   string
	identityHeader string

	vaults []*vault          // configured order: vaults, then Managed HSMs
	byName map[string]*vault // lower-case name -> vault

	clock      Clock
	counts     counters
	faults     faultSet
	throttleOn atomic.Bool

	mainURL   string            // https://host:port/
	msiURL    string            // http://host:port/msi/token
	vaultURLs map[string]string // lower-case name -> dedicated URL

	persistMu          sync.Mutex // guards state writes, caFile and federatedTokenFile
	caFile             string
	federatedTokenFile string

	dataMux *dataMux // the data plane's routes

	servers   []*http.Server
	wg        sync.WaitGroup
	clientsMu sync.Mutex
	clients   []*http.Transport // handed out by HTTPClient, closed by Close
	closeOnce sync.Once
	closeErr  error
	stop      context.CancelFunc
}

// Start creates the emulator, binds its listeners and serves until Close or
// until ctx is cancelled.
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts, err := opts.normalize()
	if err != nil {
		return nil, fmt.Errorf("azurekv: %w", err)
	}
	s := &Server{opts: opts, byName: map[string]*vault{}, vaultURLs: map[string]string{}}
	s.dataMux = s.newDataMux()
	for _, vs := range opts.Vaults {
		s.addVault(&vault{name: vs.Name, sku: vs.SKU, retentionDays: vs.RetentionDays, purgeProtection: vs.PurgeProtection, listen: vs.Listen})
	}
	for _, n := range opts.ManagedHSMs {
		s.addVault(&vault{name: n, managedHSM: true, sku: SKUPremium, retentionDays: 90})
	}

	st, err := s.loadState()
	if err != nil {
		return nil, fmt.Errorf("azurekv: %w", err)
	}
	if err := s.initSecrets(st); err != nil {
		return nil, fmt.Errorf("azurekv: %w", err)
	}
	if err := s.listenAndServe(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("azurekv: %w", err)
	}
	if err := s.persist(); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("azurekv: %w", err)
	}
	ctx, s.stop = context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		_ = s.Close()
	}()
	return s, nil
}

func (s *Server) addVault(v *vault) {
	v.keys = map[string]*keyObj{}
	v.deleted = map[string]*keyObj{}
	s.vaults = append(s.vaults, v)
	s.byName[lower(v.name)] = v
}

// initSecrets sets up the CA, token signing key and credentials, reusing
// persisted ones.
func (s *Server) initSecrets(st *state) error {
	var caCert, caKey []byte
	if st != nil {
		caCert, caKey = st.CACert, st.CAKey
	}
	var err error
	if len(caCert) > 0 && len(caKey) > 0 {
		s.ca, err = tlsca.Parse(caCert, caKey)
		if err != nil && !errors.Is(err, tlsca.ErrExpiring) {
			return err
		}
	}
	if s.ca == nil {
		if s.ca, err = tlsca.New("kmskeeper Azure Key Vault emulator CA"); err != nil {
			return err
		}
	}

	var tokKey *ecdsa.PrivateKey
	if st != nil && len(st.TokenKey) > 0 {
		if k, err := x509.ParseECPrivateKey(st.TokenKey); err == nil {
			tokKey = k
		}
	}
	if tokKey == nil {
		if tokKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return fmt.Errorf("token key: %w", err)
		}
	}
	s.token = newTokenIssuer(tokKey)
	fedKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("federated issuer key: %w", err)
	}
	s.federated = newTokenIssuer(fedKey)

	s.clientSecret = s.opts.ClientSecret
	if s.clientSecret == "" && st != nil {
		s.clientSecret = st.ClientSecret
	}
	if s.clientSecret == "" {
		s.clientSecret = randomSecret()
	}
	s.identityHeader = s.opts.IdentityHeader
	if s.identityHeader == "" && st != nil {
		s.identityHeader = st.IdentityHeader
	}
	if s.identityHeader == "" {
		s.identityHeader = randomSecret()
	}
	return nil
}

// listenAndServe binds the main TLS listener, one TLS listener per vault and
// the plain-HTTP managed-identity listener.
func (s *Server) listenAndServe() error {
	host, _, err := net.SplitHostPort(s.opts.Listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", s.opts.Listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	dns := []string{"localhost", "*.vault.azure.net", "*.managedhsm.azure.net"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, h := range s.opts.Hostnames {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, h)
		}
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsLoopback() {
		ips = append(ips, ip)
	}
	if s.cert, err = s.ca.ServerCert("vault.azure.net", dns, ips); err != nil {
		return err
	}

	mainLn, err := s.listenTLS(s.opts.Listen)
	if err != nil {
		return err
	}
	s.mainURL = "https://" + hostPort(host, mainLn.Addr()) + "/"
	s.serve(mainLn, s.handler(nil))

	for i, v := range s.vaults {
		if i == 0 && v.listen == "" {
			s.vaultURLs[lower(v.name)] = s.mainURL
			continue
		}
		addr := v.listen
		if addr == "" {
			addr = net.JoinHostPort(host, "0")
		}
		ln, err := s.listenTLS(addr)
		if err != nil {
			return fmt.Errorf("vault %s: %w", v.name, err)
		}
		vh, _, _ := net.SplitHostPort(addr)
		if vh == "" || vh == "0.0.0.0" || vh == "::" {
			vh = host
		}
		s.vaultURLs[lower(v.name)] = "https://" + hostPort(vh, ln.Addr()) + "/"
		s.serve(ln, s.handler(v))
	}

	msiAddr := s.opts.MSIListen
	if msiAddr == "" {
		msiAddr = net.JoinHostPort(host, "0")
	}
	msiLn, err := net.Listen("tcp", msiAddr)
	if err != nil {
		return fmt.Errorf("managed identity listener: %w", err)
	}
	mh, _, _ := net.SplitHostPort(msiAddr)
	if mh == "" || mh == "0.0.0.0" || mh == "::" {
		mh = host
	}
	s.msiURL = "http://" + hostPort(mh, msiLn.Addr()) + "/msi/token"
	s.serve(msiLn, s.plainHandler())
	return nil
}

func (s *Server) listenTLS(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{s.cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
	return tls.NewListener(ln, cfg), nil
}

func (s *Server) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(logWriter{s}, "", 0),
	}
	srv.SetKeepAlivesEnabled(true)
	s.servers = append(s.servers, srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logf("serve %s: %v", ln.Addr(), err)
		}
	}()
}

// logWriter sends net/http's own messages (TLS handshake errors from clients
// that do not trust the CA, for example) to Options.Logf.
type logWriter struct{ s *Server }

func (l logWriter) Write(p []byte) (int, error) {
	l.s.logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// Close stops every listener, waits for the serving goroutines and writes
// the state one last time.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			s.stop()
		}
		// The clients handed out drop their idle connections first: the
		// shutdown would otherwise wait out HTTP/2's one-second GOAWAY grace
		// on each of them.
		s.clientsMu.Lock()
		for _, tr := range s.clients {
			tr.CloseIdleConnections()
		}
		s.clientsMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, srv := range s.servers {
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
		}
		s.wg.Wait()
		if s.ca != nil {
			s.closeErr = s.persist()
		}
	})
	return s.closeErr
}

// URL returns the main HTTPS URL (with a trailing slash). It serves the Entra
// endpoints and the admin API, and reaches the first vault (or the first
// Managed HSM when no vault is configured).
func (s *Server) URL() string { return s.mainURL }

// VaultURL returns a URL that reaches the named vault or Managed HSM from any
// client without DNS set-up: the vault's dedicated loopback port
// (https://127.0.0.1:<port>/; the first vault shares the main port). It
// returns "" for an unknown name. Use it as azkeys' vaultURL (with
// DisableChallengeResourceVerification) and as SPIRE's key_vault_uri.
func (s *Server) VaultURL(name string) string { return s.vaultURLs[lower(name)] }

// HostVaultURL returns the cloud-style URL of a vault,
// https://<name>.vault.azure.net/ or https://<name>.managedhsm.azure.net/.
// It reaches the emulator's main port when the name resolves to it and the
// port is 443, or through a dialer that sends that host to Addr().
func (s *Server) HostVaultURL(name string) string {
	v := s.byName[lower(name)]
	if v == nil {
		return ""
	}
	if v.managedHSM {
		return "https://" + v.name + ".managedhsm.azure.net/"
	}
	return "https://" + v.name + ".vault.azure.net/"
}

// Addr returns the host:port of the main listener.
func (s *Server) Addr() string {
	return strings.TrimSuffix(strings.TrimPrefix(s.mainURL, "https://"), "/")
}

// MSIURL returns the App Service style managed-identity endpoint (plain
// HTTP, like App Service), the value of IDENTITY_ENDPOINT.
func (s *Server) MSIURL() string { return s.msiURL }

// CAPEM returns the emulator CA certificate in PEM form.
func (s *Server) CAPEM() []byte { return append([]byte(nil), s.ca.CertPEM...) }

// CertPool returns a pool holding only the emulator CA, for an
// http.Client's tls.Config.RootCAs.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.ca.Cert)
	return p
}

// HTTPClient returns an HTTP client that trusts the emulator CA, suitable
// as azcore.ClientOptions.Transport for both azkeys and azidentity. Close
// closes its idle connections.
func (s *Server) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: s.CertPool(), MinVersion: tls.VersionTLS12}
	s.clientsMu.Lock()
	s.clients = append(s.clients, tr)
	s.clientsMu.Unlock()
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// AuthorityHost returns the Entra authority host (AZURE_AUTHORITY_HOST,
// azcore cloud.Configuration.ActiveDirectoryAuthorityHost).
func (s *Server) AuthorityHost() string { return s.mainURL }

// TenantID returns the directory (tenant) ID the emulator issues tokens for.
func (s *Server) TenantID() string { return s.opts.TenantID }

// ClientID returns the client-credentials application's ID.
func (s *Server) ClientID() string { return s.opts.ClientID }

// ClientSecret returns the client-credentials application's secret.
func (s *Server) ClientSecret() string { return s.clientSecret }

// ManagedIdentityClientID returns the client ID of the managed identity that
// the IDENTITY_ENDPOINT hands tokens to (for Roles).
func (s *Server) ManagedIdentityClientID() string { return s.opts.ManagedIdentityClientID }

// IdentityHeader returns the value IDENTITY_HEADER must carry.
func (s *Server) IdentityHeader() string { return s.identityHeader }

// Clock returns the emulator clock; keys' dates and soft-delete retention
// follow it.
func (s *Server) Clock() *Clock { return &s.clock }

// Vaults returns the names of the served vaults, then Managed HSMs.
func (s *Server) Vaults() []string {
	out := make([]string, len(s.vaults))
	for i, v := range s.vaults {
		out[i] = v.name
	}
	return out
}

// IsManagedHSM reports whether name is a Managed HSM rather than a vault.
func (s *Server) IsManagedHSM(name string) bool {
	v := s.byName[lower(name)]
	return v != nil && v.managedHSM
}

func hostPort(host string, addr net.Addr) string {
	_, port, _ := net.SplitHostPort(addr.String())
	return net.JoinHostPort(host, port)
}

func lower(s string) string { return strings.ToLower(s) }

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = io.ReadFull(rand.Reader, b)
	return b64(b)
}
