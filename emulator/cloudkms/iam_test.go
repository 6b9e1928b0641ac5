package cloudkms

import (
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"cloud.google.com/go/iam"
	"cloud.google.com/go/iam/apiv1/iampb"
	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
)

func TestIAMPolicies(t *testing.T) {
	_, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	h := c.ResourceIAM(key.GetName()).V3()
	p, err := h.Policy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Bindings) != 0 {
		t.Fatalf("new key has bindings: %v", p.Bindings)
	}
	p.Bindings = append(p.Bindings, &iampb.Binding{Role: "roles/cloudkms.signerVerifier", Members: []string{"serviceAccount:spire@p.iam.gserviceaccount.com"}})
	if err := h.SetPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := h.Policy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Bindings) != 1 || got.Bindings[0].Members[0] != "serviceAccount:spire@p.iam.gserviceaccount.com" {
		t.Fatalf("policy after set: %v", got)
	}
	// A stale etag is a concurrent modification.
	err = h.SetPolicy(ctx, p)
	wantCode(t, err, codes.Aborted, "concurrent policy changes")
	// The v1 handle (IAM policy version 1) reads the same bindings.
	v1, err := c.ResourceIAM(key.GetName()).Policy(ctx)
	if err != nil || !v1.HasRole("serviceAccount:spire@p.iam.gserviceaccount.com", "roles/cloudkms.signerVerifier") {
		t.Fatalf("v1 policy: %v, %v", v1, err)
	}
	// Key rings carry policies too; missing resources are NOT_FOUND.
	if _, err := c.ResourceIAM(testRing).V3().Policy(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.ResourceIAM(testRing + "/cryptoKeys/nope").V3().Policy(ctx)
	wantCode(t, err, codes.NotFound, "not found")
	bad := &iam.Policy3{Bindings: []*iampb.Binding{{Role: "cloudkms.signer", Members: []string{"serviceAccount:x@y"}}}}
	wantCode(t, c.ResourceIAM(key.GetName()).V3().SetPolicy(ctx, bad), codes.InvalidArgument, "role")
}

// TestPermissionChecks authenticates as emulator-issued service accounts
// over TLS, through both the self-signed-JWT path (the kms client's default
// with a key file) and the OAuth2 token endpoint, and checks IAM decisions.
func TestPermissionChecks(t *testing.T) {
	const (
		signer = "signer@p.iam.gserviceaccount.com"
		admin  = "admin@p.iam.gserviceaccount.com"
	)
	s, anon := startTest(t, Options{TLS: true, Principals: map[string][]string{
		admin:  {"roles/cloudkms.admin", "cloudkms.cryptoKeyVersions.viewPublicKey"},
		signer: {"cloudkms.cryptoKeys.list"},
	}})
	ctx := context.Background()
	clientAs := func(email string) *kms.KeyManagementClient {
		t.Helper()
		opts, err := s.ClientOptionsAs(email)
		if err != nil {
			t.Fatal(err)
		}
		c, err := kms.NewKeyManagementClient(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	adminC, signerC := clientAs(admin), clientAs(signer)

	_, err := anon.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: testRing}).Next()
	wantCode(t, err, codes.Unauthenticated, "authentication credential")

	key := createKey(t, adminC, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	v1 := key.GetName() + "/cryptoKeyVersions/1"
	signReq := &kmspb.AsymmetricSignRequest{Name: v1, Digest: digestFor(crypto.SHA256, []byte("x"))}
	_, err = signerC.AsymmetricSign(ctx, signReq)
	wantCode(t, err, codes.PermissionDenied, "Permission 'cloudkms.cryptoKeyVersions.useToSign' denied on resource '"+v1+"' (or it may not exist).")
	_, err = signerC.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{Parent: testRing, CryptoKeyId: "x"})
	wantCode(t, err, codes.PermissionDenied, "cloudkms.cryptoKeys.create")
	if _, err := signerC.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: testRing}).Next(); err != nil {
		t.Fatalf("list with cloudkms.cryptoKeys.list: %v", err)
	}

	// The binding SPIRE's gcp_kms sets on its keys grants signing.
	h := adminC.ResourceIAM(key.GetName()).V3()
	p, err := h.Policy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Bindings = append(p.Bindings, &iampb.Binding{Role: "roles/cloudkms.signerVerifier", Members: []string{"serviceAccount:" + signer}})
	if err := h.SetPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := signerC.AsymmetricSign(ctx, signReq); err != nil {
		t.Fatalf("sign after binding: %v", err)
	}
	if _, err := signerC.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: v1}); err != nil {
		t.Fatalf("public key after binding: %v", err)
	}
	perms, err := signerC.ResourceIAM(key.GetName()).TestPermissions(ctx, []string{"cloudkms.cryptoKeyVersions.useToSign", "cloudkms.cryptoKeys.update"})
	if err != nil || len(perms) != 1 || perms[0] != "cloudkms.cryptoKeyVersions.useToSign" {
		t.Fatalf("TestPermissions = %v, %v", perms, err)
	}

	// OAuth2 JWT-bearer flow against token_uri, then tokeninfo.
	js, err := s.ServiceAccountJSON(admin)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := google.JWTConfigFromJSON(js, "https://www.googleapis.com/auth/cloud-platform")
	if err != nil {
		t.Fatal(err)
	}
	ts := cfg.TokenSource(ctx)
	tok, err := ts.Token()
	if err != nil {
		t.Fatalf("token endpoint: %v", err)
	}
	tokC, err := kms.NewKeyManagementClient(ctx, append(s.transportOptions(), option.WithTokenSource(ts))...)
	if err != nil {
		t.Fatal(err)
	}
	defer tokC.Close()
	if _, err := tokC.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()}); err != nil {
		t.Fatalf("call with access token: %v", err)
	}
	resp, err := http.Get(s.TokenInfoURL() + "oauth2/v2/tokeninfo?access_token=" + url.QueryEscape(tok.AccessToken))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		Email string `json:"email"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil || info.Email != admin {
		t.Fatalf("tokeninfo: %v, %v", info, err)
	}
}
