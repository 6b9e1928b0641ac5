package gcpkms

import (
	"context"
	"fmt"
	"os"

	"cloud.google.com/go/iam/apiv1/iampb"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

var _ config.ServerIDChecker = (*Config)(nil)

// Config is the Google Cloud KMS part of plugin_data: every key SPIRE's
// gcp_kms accepts (the common key_identifier_* keys are config's), plus
// kmskeeper's own.
type Config struct {
	// KeyRing holds the keys (required): projects/<p>/locations/<l>/keyRings/<r>.
	KeyRing string `hcl:"key_ring"`
	// KeyPolicyFile is an IAM policy (v3 JSON) set on every created key
	// instead of the default one.
	KeyPolicyFile string `hcl:"key_policy_file"`
	// ServiceAccountFile is a credentials JSON file; otherwise Application
	// Default Credentials.
	ServiceAccountFile string `hcl:"service_account_file"`
	// KeyProtection is the protection level of new keys: software or hsm.
	KeyProtection string `hcl:"key_protection"`
	// RSASignatureScheme is the padding of new RSA keys: pkcs1 or pss.
	RSASignatureScheme string `hcl:"rsa_signature_scheme"`
	// KeyLabels are added to every key the plugin creates or keeps alive.
	KeyLabels map[string]string `hcl:"key_labels"`
	// Endpoint replaces the public endpoint (Private Service Connect, an
	// emulator). Only a loopback endpoint may be plaintext.
	Endpoint string `hcl:"endpoint"`

	// Set by Check.
	protection kmspb.ProtectionLevel
	scheme     Scheme
	policy     *iampb.Policy
	endpoint   endpoint
}

// Kind returns the Google Cloud KMS configuration kind, selected by key_ring
// as SPIRE's gcp_kms is.
func Kind() config.Kind {
	return config.Kind{Name: "gcp_kms", Selector: "key_ring", New: func() config.Backend { return &Config{} }}
}

// Check implements config.Backend: every static check, reading only
// key_policy_file (to validate the policy).
func (c *Config) Check(string) error {
	// Every problem is reported (config.Problems), not only the first.
	var problems config.Problems
	if err := checkKeyRing(c.KeyRing); err != nil {
		problems = append(problems, err)
	}
	switch c.KeyProtection {
	case "", "software":
		c.protection = kmspb.ProtectionLevel_SOFTWARE
	case "hsm":
		c.protection = kmspb.ProtectionLevel_HSM
	default:
		problems = append(problems, fmt.Errorf("key_protection = %q: want \"software\" (the default) or \"hsm\"", c.KeyProtection))
	}
	switch Scheme(c.RSASignatureScheme) {
	case "", SchemePKCS1:
		c.scheme = SchemePKCS1
	case SchemePSS:
		c.scheme = SchemePSS
	default:
		problems = append(problems, fmt.Errorf("rsa_signature_scheme = %q: want \"pkcs1\" (the default, what SPIRE signs with) or \"pss\"", c.RSASignatureScheme))
	}
	if err := checkUserLabels(c.KeyLabels); err != nil {
		problems = append(problems, err)
	}
	ep, err := parseEndpoint(c.Endpoint)
	if err != nil {
		problems = append(problems, err)
	} else {
		c.endpoint = ep
		// The credentials file is read here too (no call is made), so that
		// SPIRE's Validate reports a missing or wrong file as Configure would.
		if c.ServiceAccountFile != "" {
			if _, err := loadCredentials(c.ServiceAccountFile, ep, os.Getenv); err != nil {
				problems = append(problems, err)
			}
		}
	}
	if c.KeyPolicyFile != "" {
		if c.policy, err = readPolicyFile(c.KeyPolicyFile); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return problems
}

// Fixed implements config.Backend: the key ring, the endpoint and the
// credentials' source cannot change while keys are served.
func (c *Config) Fixed() string {
	creds := "Application Default Credentials"
	switch {
	case c.ServiceAccountFile != "":
		creds = "service_account_file " + c.ServiceAccountFile
	case c.endpoint.loopback:
		creds = "no credentials unless GOOGLE_APPLICATION_CREDENTIALS is set"
	}
	return fmt.Sprintf("key ring %s via %s with %s", c.KeyRing, c.endpoint, creds)
}

// CheckServerID implements config.ServerIDChecker: the server ID becomes
// part of every CryptoKey ID and a label value, so Cloud KMS's rules for
// both apply to it. SPIRE's Validate then refuses an ID that Configure would,
// rather than answering valid for a configuration that cannot start.
func (c *Config) CheckServerID(serverID string) error {
	return checkServerID(serverID)
}

// Open implements config.Backend: it loads the credentials and builds the
// client (New checks the server ID again, for IDs that did not come through
// config). It makes no Cloud KMS call.
func (c *Config) Open(ctx context.Context, p config.OpenParams) (engine.Backend, error) {
	creds, err := loadCredentials(c.ServiceAccountFile, c.endpoint, os.Getenv)
	if err != nil {
		return nil, engine.Errorf(codes.InvalidArgument, "%w", err)
	}
	// New estimates the cloud's clock itself: Now stays the local clock
	// (a second estimate fed as Now counted the cloud's lead twice).
	opts := append(c.endpoint.clientOptions(), creds.options...)
	b, err := New(ctx, Options{
		KeyRing:             c.KeyRing,
		TrustDomain:         p.TrustDomain,
		ServerID:            p.ServerID,
		Protection:          c.protection,
		Scheme:              c.scheme,
		Labels:              c.KeyLabels,
		Policy:              c.policy,
		ClientOptions:       opts,
		ServiceAccountEmail: creds.email,
		LookupEmail:         creds.lookup,
		Logger:              p.Logger,
		Metrics:             p.Metrics,
	})
	if err != nil {
		return nil, err
	}
	b.log.Debug("Cloud KMS client ready", "key_ring", c.KeyRing, "endpoint", c.endpoint.String(), "credentials", creds.describe)
	return b, nil
}

// clientOptions reach the endpoint: the default, or WithEndpoint with TLS,
// or insecure transport credentials for a plaintext loopback endpoint.
func (e endpoint) clientOptions() []option.ClientOption {
	if e.address == "" {
		return nil
	}
	opts := []option.ClientOption{option.WithEndpoint(e.address)}
	if e.plaintext {
		opts = append(opts, option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	return opts
}
