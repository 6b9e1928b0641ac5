package cloudkms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kmskeeper/kmskeeper/emulator/internal/tlsca"
)

// Server is a running emulator. Create it with Start and stop it with Close.
type Server struct {
	opts   Options
	clock  *Clock
	st     *store
	auth   *authority
	faults *faultSet
	quotas *quotaState
	// services are the projects whose Cloud KMS API is disabled.
	services *services
	counts   *counters
	// requests logs the calls received, for Requests.
	requests *requestLog
	ca       *tlsca.CA // nil unless Options.TLS

	grpcSrv  *grpc.Server
	lis      net.Listener
	conns    *connListener // lis, tracking connections for Fault.Drop
	tokenSrv *http.Server
	// tlsSrv serves the gRPC listener with Options.TLS: gRPC and the HTTP
	// endpoints on one port (nil without TLS: grpcSrv serves it alone).
	tlsSrv   *http.Server
	tokenLis net.Listener
	adminSrv *http.Server // nil unless Options.AdminListen
	adminLis net.Listener

	filesMu sync.Mutex
	caFile  string // written by WriteCAFile, for Env
	saFile  string // first file written by WriteServiceAccountFile, for Env

	closeOnce sync.Once
	done      chan struct{}
	serveErr  chan error
}

// Start starts an emulator on opts.Listen and returns once it accepts
// connections. It stops when ctx is cancelled or Close is called.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.TokenListen == "" {
		opts.TokenListen = "127.0.0.1:0"
	}
	if opts.Clock == nil {
		opts.Clock = NewClock()
	}
	s := &Server{
		opts:     opts,
		clock:    opts.Clock,
		st:       newStore(),
		faults:   &faultSet{},
		quotas:   newQuotaState(opts.Quotas, opts.QuotaModel, opts.QuotaLimits),
		services: newServices(opts.DisabledProjects),
		counts:   &counters{m: map[string]int{}},
		requests: &requestLog{},
		done:     make(chan struct{}),
		serveErr: make(chan error, 2),
	}
	s.auth = newAuthority(opts.Principals, s.clock)
	if err := s.load(); err != nil {
		return nil, fmt.Errorf("gcpkms: load state from %s: %w", opts.DataDir, err)
	}
	for _, r := range opts.KeyRings {
		if err := parseKeyRingName(r); err != nil {
			return nil, fmt.Errorf("gcpkms: key ring %q: %w", r, err)
		}
		s.st.mu.Lock()
		if _, ok := s.st.rings[r]; !ok {
			s.addKeyRingLocked(r)
		}
		s.st.mu.Unlock()
	}
	var err error
	if s.lis, err = net.Listen("tcp", opts.Listen); err != nil {
		return nil, fmt.Errorf("gcpkms: listen on %s: %w", opts.Listen, err)
	}
	if s.tokenLis, err = net.Listen("tcp", opts.TokenListen); err != nil {
		s.lis.Close()
		return nil, fmt.Errorf("gcpkms: listen on %s: %w", opts.TokenListen, err)
	}
	s.auth.tokenURL = "http://" + s.tokenLis.Addr().String() + "/token"
	if err := s.auth.loadAccounts(opts.DataDir); err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("gcpkms: load service accounts: %w", err)
	}

	s.grpcSrv = grpc.NewServer(grpc.ChainUnaryInterceptor(s.intercept))
	kmspb.RegisterKeyManagementServiceServer(s.grpcSrv, &kmsService{s: s})
	iampb.RegisterIAMPolicyServer(s.grpcSrv, &iamService{s: s})
	s.tokenSrv = &http.Server{Handler: s.auth.handler()}
	if opts.TLS {
		if s.ca, err = loadOrCreateCA(opts.DataDir); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("gcpkms: certificate authority: %w", err)
		}
		dns, ips := serverNames(s.lis.Addr(), opts.Hostnames)
		cert, err := s.ca.ServerCert("localhost", dns, ips)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("gcpkms: server certificate: %w", err)
		}
		// One TLS port serves gRPC and, beside it, the HTTP endpoints that
		// Google serves on its other host names (token, tokeninfo), so that
		// a client whose hosts file sends cloudkms.googleapis.com,
		// oauth2.googleapis.com and www.googleapis.com here needs no
		// other change.
		s.tlsSrv = &http.Server{
			Handler: s.tlsHandler(),
			TLSConfig: &tls.Config{
				Certificates: []tls.Certificate{cert},
				MinVersion:   tls.VersionTLS12,
				NextProtos:   []string{"h2", "http/1.1"},
			},
		}
	}

	if opts.AdminListen != "" {
		if s.adminLis, err = net.Listen("tcp", opts.AdminListen); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("gcpkms: listen on %s: %w", opts.AdminListen, err)
		}
		s.adminSrv = &http.Server{Handler: s.AdminHandler()}
		go func() { s.serveErr <- s.adminSrv.Serve(s.adminLis) }()
	}
	s.conns = newConnListener(s.lis)
	if s.tlsSrv != nil {
		go func() { s.serveErr <- s.tlsSrv.ServeTLS(s.conns, "", "") }()
	} else {
		go func() { s.serveErr <- s.grpcSrv.Serve(s.conns) }()
	}
	go func() { s.serveErr <- s.tokenSrv.Serve(s.tokenLis) }()
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	s.logf("gcpkms: serving Cloud KMS on %s (tls=%v), token endpoint %s", s.Addr(), opts.TLS, s.auth.tokenURL)
	return s, nil
}

func (s *Server) closeListeners() {
	s.lis.Close()
	s.tokenLis.Close()
}

// Close stops the servers and waits for in-flight calls. It is safe to call
// more than once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		if s.tlsSrv != nil {
			s.tlsSrv.Close()
		}
		s.grpcSrv.Stop()
		err = s.tokenSrv.Close()
		if s.adminSrv != nil {
			s.adminSrv.Close()
		}
		s.st.mu.Lock()
		s.persistLocked()
		s.st.mu.Unlock()
	})
	return err
}

// Addr is the gRPC host:port, for option.WithEndpoint.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// AdminURL is the base URL of the admin API ("" without
// Options.AdminListen).
func (s *Server) AdminURL() string {
	if s.adminLis == nil {
		return ""
	}
	return "http://" + s.adminLis.Addr().String()
}

// TokenURL is the OAuth2 token endpoint written as token_uri into service
// account files.
func (s *Server) TokenURL() string { return s.auth.tokenURL }

// TokenInfoURL is the base URL of the oauth2 v2 API (tokeninfo) the emulator
// serves, for option.WithEndpoint on google.golang.org/api/oauth2/v2 (SPIRE's
// gcp_kms looks up its service account email there).
func (s *Server) TokenInfoURL() string {
	return "http://" + s.tokenLis.Addr().String() + "/"
}

// CAPEM returns the PEM of the CA that signed the server certificate (nil
// without TLS). Clients trust it instead of the system roots.
func (s *Server) CAPEM() []byte {
	if s.ca == nil {
		return nil
	}
	return s.ca.CertPEM
}

// Clock returns the emulator clock.
func (s *Server) Clock() *Clock { return s.clock }

// ClientOptions returns what an in-process cloud.google.com/go client needs
// to reach the emulator anonymously: the endpoint, transport credentials
// (insecure, or TLS trusting CAPEM) and no authentication. With principals
// configured, use ClientOptionsAs instead.
func (s *Server) ClientOptions() []option.ClientOption {
	return append(s.transportOptions(), option.WithoutAuthentication())
}

// ClientOptionsAs returns client options that authenticate as the service
// account email (created on first use), exactly as a process given the
// service account JSON file would: the official client signs a JWT with the
// account's key and the emulator verifies it.
func (s *Server) ClientOptionsAs(email string) ([]option.ClientOption, error) {
	js, err := s.ServiceAccountJSON(email)
	if err != nil {
		return nil, err
	}
	return append(s.transportOptions(), option.WithAuthCredentialsJSON(option.ServiceAccount, js)), nil
}

func (s *Server) transportOptions() []option.ClientOption {
	opts := []option.ClientOption{option.WithEndpoint(s.Addr())}
	if s.ca == nil {
		return append(opts, option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.CertPEM)
	return append(opts, option.WithGRPCDialOption(grpc.WithTransportCredentials(
		credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))))
}

// ServiceAccountJSON returns a service account key file for email (creating
// the account and its RSA key on first use) whose token_uri is the emulator's
// token endpoint. Give it to a client as GOOGLE_APPLICATION_CREDENTIALS or
// option.WithAuthCredentialsFile.
func (s *Server) ServiceAccountJSON(email string) ([]byte, error) {
	js, created, err := s.auth.serviceAccountJSON(email)
	if err != nil {
		return nil, fmt.Errorf("gcpkms: service account %s: %w", email, err)
	}
	if created {
		if err := s.auth.saveAccounts(s.opts.DataDir); err != nil {
			return nil, fmt.Errorf("gcpkms: save service accounts: %w", err)
		}
	}
	return js, nil
}

// SetPrincipal grants perms (permissions or role names) to email on every
// resource, replacing what it had; it turns permission checks on if they
// were off.
func (s *Server) SetPrincipal(email string, perms ...string) { s.auth.setPrincipal(email, perms) }

func (s *Server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

// tlsHandler answers gRPC (HTTP/2 with content-type application/grpc)
// through the gRPC server, and any other request with the HTTP endpoints
// of the token port (token, tokeninfo).
func (s *Server) tlsHandler() http.Handler {
	web := s.auth.handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			s.grpcSrv.ServeHTTP(w, r)
			return
		}
		web.ServeHTTP(w, r)
	})
}
