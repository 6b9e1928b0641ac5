package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// demoSVIDPath is the workload the demo mints SVIDs for.
const demoSVIDPath = "/demo"

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// selfSignedCA makes a trust domain CA certificate signed by ca, as SPIRE
// does for a self-signed X.509 authority: x509.CreateCertificate signs
// through the plugin's SignData.
func selfSignedCA(ca crypto.Signer) (*x509.Certificate, error) {
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	td := spiffeid.RequireTrustDomainFromString(demoTrustDomain)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "kmskeeper demo CA", Organization: []string{"SPIFFE"}},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ca.Public(), ca)
	if err != nil {
		return nil, fmt.Errorf("creating the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("the CA certificate's signature does not verify: %w", err)
	}
	return cert, nil
}

// x509SVID mints an X509-SVID for spiffe://example.org/demo signed by the CA
// key through SignData, and verifies it with go-spiffe against a bundle
// holding only caCert. It returns the verified SPIFFE ID.
func x509SVID(ca crypto.Signer, caCert *x509.Certificate) (string, error) {
	workload, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	sn, err := serial()
	if err != nil {
		return "", err
	}
	td := spiffeid.RequireTrustDomainFromString(demoTrustDomain)
	id, err := spiffeid.FromPath(td, demoSVIDPath)
	if err != nil {
		return "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{"SPIRE"}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, workload.Public(), ca)
	if err != nil {
		return "", fmt.Errorf("creating the X509-SVID: %w", err)
	}
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{caCert})
	got, _, err := x509svid.ParseAndVerify([][]byte{der}, bundle)
	if err != nil {
		return "", fmt.Errorf("go-spiffe does not verify the X509-SVID: %w", err)
	}
	if got != id {
		return "", fmt.Errorf("go-spiffe read SPIFFE ID %s, want %s", got, id)
	}
	return got.String(), nil
}

// jwtSVID mints a JWT-SVID for spiffe://example.org/demo signed by the JWT
// key through SignData (ES256: the DER signature becomes JOSE's r||s), and
// verifies it with go-spiffe against a bundle holding the key under kid.
func jwtSVID(signer crypto.Signer, kid string) (string, error) {
	td := spiffeid.RequireTrustDomainFromString(demoTrustDomain)
	id, err := spiffeid.FromPath(td, demoSVIDPath)
	if err != nil {
		return "", err
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return "", errors.New("the JWT key is not an EC P-256 key")
	}
	if len(kid) > 32 {
		kid = kid[:32]
	}
	header, _ := json.Marshal(map[string]string{"alg": "ES256", "kid": kid, "typ": "JWT"})
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"sub": id.String(),
		"aud": []string{"kmskeeper-demo"},
		"iat": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(),
	})
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	digest := sha256.Sum256([]byte(input))
	der, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("signing the JWT-SVID: %w", err)
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) > 0 {
		return "", fmt.Errorf("the signature is not ASN.1 DER: %v", err)
	}
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	token := input + "." + enc.EncodeToString(raw)

	bundle := jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{kid: pub})
	svid, err := jwtsvid.ParseAndValidate(token, bundle, []string{"kmskeeper-demo"})
	if err != nil {
		return "", fmt.Errorf("go-spiffe does not validate the JWT-SVID: %w", err)
	}
	if svid.ID != id {
		return "", fmt.Errorf("go-spiffe read subject %s, want %s", svid.ID, id)
	}
	return svid.ID.String() + ", audience kmskeeper-demo", nil
}
