package cloudkms

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/iam/apiv1/iampb"
	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	oauth2v2 "google.golang.org/api/oauth2/v2"
	"google.golang.org/api/option"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// TestSetIamPolicyMembers checks that SetIamPolicy refuses, with the
// service's words, a member whose type prefix is wrongly cased and, while
// identity checks are on, a service account the emulator does not know;
// AllowUnknownMembers brings back the old acceptance.
func TestSetIamPolicyMembers(t *testing.T) {
	const (
		issued    = "issued@p.iam.gserviceaccount.com"
		principal = "principal@p.iam.gserviceaccount.com"
		unknown   = "unknown@p.iam.gserviceaccount.com"
	)
	checked := Options{Principals: map[string][]string{principal: {"*"}}}
	tests := []struct {
		name   string
		opts   Options
		member string
		code   codes.Code
		msg    string
	}{
		{"issued account", checked, "serviceAccount:" + issued, codes.OK, ""},
		{"principal", checked, "serviceAccount:" + principal, codes.OK, ""},
		{"unknown account", checked, "serviceAccount:" + unknown, codes.InvalidArgument, "Service account " + unknown + " does not exist."},
		{"wrongly cased type", checked, "serviceaccount:" + issued, codes.InvalidArgument, "The member serviceaccount:" + issued + " is of an unknown type. Please set a valid type prefix for the member."},
		{"wrongly cased type without identity checks", Options{}, "serviceaccount:" + issued, codes.InvalidArgument, "is of an unknown type"},
		{"unknown account without identity checks", Options{}, "serviceAccount:" + unknown, codes.OK, ""},
		{"unknown account allowed", Options{Principals: checked.Principals, AllowUnknownMembers: true}, "serviceAccount:" + unknown, codes.OK, ""},
		{"a user is not checked", checked, "user:someone@example.com", codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := startTest(t, tt.opts)
			if _, err := s.ServiceAccountJSON(issued); err != nil {
				t.Fatal(err)
			}
			opts, err := s.ClientOptionsAs(principal)
			if err != nil {
				t.Fatal(err)
			}
			c, err := kms.NewKeyManagementClient(context.Background(), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
			_, err = c.SetIamPolicy(context.Background(), &iampb.SetIamPolicyRequest{Resource: key.GetName(),
				Policy: &iampb.Policy{Version: 3, Bindings: []*iampb.Binding{{Role: "roles/cloudkms.signerVerifier", Members: []string{tt.member}}}}})
			wantCode(t, err, tt.code, tt.msg)
		})
	}
}

// TestServiceDisabled checks a project whose Cloud KMS API is disabled:
// PERMISSION_DENIED with an ErrorInfo of reason SERVICE_DISABLED naming the
// project, until the API is enabled (here through the admin API).
func TestServiceDisabled(t *testing.T) {
	s, c := startTest(t, Options{DisabledProjects: []string{"p"}, AdminListen: "127.0.0.1:0"})
	ctx := context.Background()
	_, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: testRing + "/cryptoKeys/k"})
	wantCode(t, err, codes.PermissionDenied, "Cloud Key Management Service (KMS) API has not been used in project p before or it is disabled.")
	var info *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info.GetReason() != "SERVICE_DISABLED" || info.GetMetadata()["consumer"] != "projects/p" || info.GetMetadata()["service"] != "cloudkms.googleapis.com" {
		t.Fatalf("ErrorInfo = %v, want reason SERVICE_DISABLED for projects/p and cloudkms.googleapis.com", info)
	}
	admin := &AdminClient{BaseURL: s.AdminURL()}
	if err := admin.SetServiceEnabled(ctx, "p", true); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: testRing + "/cryptoKeys/k"})
	wantCode(t, err, codes.NotFound, "")
}

// TestTLSPortAnswersAsGoogle reaches the TLS port only by Google's host
// names, as a client does whose hosts file sends them to the emulator: the
// official Cloud KMS client on its default endpoint
// (cloudkms.googleapis.com:443), the OAuth2 library fetching a token from
// https://oauth2.googleapis.com/token, and the generated oauth2/v2 client
// asking https://www.googleapis.com/oauth2/v2/tokeninfo who the token
// belongs to (SPIRE's gcp_kms does that to build its key policy). Dials go
// to the loopback port; names, certificate checks and paths are the real
// ones.
func TestTLSPortAnswersAsGoogle(t *testing.T) {
	const email = "spire-server@p.iam.gserviceaccount.com"
	s, _ := startTest(t, Options{TLS: true, Principals: map[string][]string{email: {"*"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CAPEM())
	tlsConf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	var (
		mu    sync.Mutex
		dials []string
	)
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		mu.Lock()
		dials = append(dials, addr)
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, "tcp", s.Addr())
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   tlsConf,
		ForceAttemptHTTP2: true,
		DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) },
	}}

	sa, err := s.ServiceAccountJSON(email)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kms.NewKeyManagementClient(ctx,
		option.WithAuthCredentialsJSON(option.ServiceAccount, sa),
		option.WithGRPCDialOption(grpc.WithContextDialer(dial)),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(credentials.NewTLS(tlsConf))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "k",
		CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN, VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256}}}); err != nil {
		t.Fatalf("CreateCryptoKey through cloudkms.googleapis.com:443: %v", err)
	}

	// The key file as Google issues it: its token_uri is Google's.
	var file map[string]any
	if err := json.Unmarshal(sa, &file); err != nil {
		t.Fatal(err)
	}
	file["token_uri"] = "https://oauth2.googleapis.com/token"
	sa, _ = json.Marshal(file)
	creds, err := google.CredentialsFromJSONWithType(context.WithValue(ctx, oauth2.HTTPClient, hc), sa, google.ServiceAccount, "https://www.googleapis.com/auth/cloud-platform")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := creds.TokenSource.Token()
	if err != nil {
		t.Fatalf("token from https://oauth2.googleapis.com/token: %v", err)
	}
	svc, err := oauth2v2.NewService(ctx, option.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}
	info, err := svc.Tokeninfo().AccessToken(tok.AccessToken).Context(ctx).Do()
	if err != nil {
		t.Fatalf("tokeninfo from https://www.googleapis.com/oauth2/v2/tokeninfo: %v", err)
	}
	if info.Email != email {
		t.Errorf("tokeninfo email = %q, want %q", info.Email, email)
	}
	want := map[string]bool{"cloudkms.googleapis.com:443": false, "oauth2.googleapis.com:443": false, "www.googleapis.com:443": false}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range dials {
		if _, ok := want[d]; !ok {
			t.Errorf("a client dialed %s, not one of Google's host names", d)
		}
		want[d] = true
	}
	for host, dialed := range want {
		if !dialed {
			t.Errorf("no client dialed %s", host)
		}
	}
}
