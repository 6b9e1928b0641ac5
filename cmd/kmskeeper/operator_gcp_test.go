package main

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
)

// TestOperatorGCP runs validate, keys list and gc against the Cloud KMS
// emulator: the official kms client over gRPC, a service account key file
// in plugin_data, IAM permission checks. One emulator serves every
// scenario, each in a key ring of its own.
func TestOperatorGCP(t *testing.T) {
	testOperatorCommands(t, startGCPOperatorEmulator(t, opClouds))
}

const gcpInspector = "inspector@kmskeeper-test.iam.gserviceaccount.com"

// gcpAccounts are the service accounts of the identities with their
// project-wide grants. cannotSign's keys also get a key_policy_file that
// binds signing to another account: otherwise the default key policy would
// grant the plugin's own account signing on every key it creates.
var gcpAccounts = map[identity]struct {
	email  string
	grants []string
}{
	fullAccess:   {"spire-server@kmskeeper-test.iam.gserviceaccount.com", []string{"roles/cloudkms.admin", "roles/cloudkms.signerVerifier"}},
	cannotList:   {"signer-only@kmskeeper-test.iam.gserviceaccount.com", []string{"roles/cloudkms.signerVerifier"}},
	cannotSign:   {"admin-only@kmskeeper-test.iam.gserviceaccount.com", []string{"roles/cloudkms.admin", "roles/cloudkms.publicKeyViewer"}},
	cannotCreate: {"no-create@kmskeeper-test.iam.gserviceaccount.com", []string{"roles/cloudkms.viewer", "roles/cloudkms.signerVerifier", "cloudkms.cryptoKeyVersions.destroy"}},
}

// gcpOperatorCloud is one key ring of a Cloud KMS emulator, seen by the
// test through an all-powerful account.
type gcpOperatorCloud struct {
	srv       *cloudkms.Server
	inspector *kms.KeyManagementClient
	ring      string
}

// startGCPOperatorEmulator starts a plaintext loopback emulator with
// identity checks on and rings empty key rings, and returns the key rings.
func startGCPOperatorEmulator(t *testing.T, rings int) []operatorCloud {
	t.Helper()
	opts := cloudkms.Options{Principals: map[string][]string{gcpInspector: {"*"}}}
	for _, a := range gcpAccounts {
		opts.Principals[a.email] = a.grants
	}
	// The account cannotSign's key policy names exists, with no grants of
	// its own: Cloud KMS refuses a policy naming an unknown account.
	opts.Principals["another-server@kmskeeper-test.iam.gserviceaccount.com"] = nil
	for i := range rings {
		opts.KeyRings = append(opts.KeyRings, fmt.Sprintf("projects/kmskeeper-test/locations/global/keyRings/operator-%02d", i))
	}
	srv, err := cloudkms.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting the Cloud KMS emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	co, err := srv.ClientOptionsAs(gcpInspector)
	if err != nil {
		t.Fatal(err)
	}
	inspector, err := kms.NewKeyManagementClient(context.Background(), co...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inspector.Close() })
	var out []operatorCloud
	for _, r := range opts.KeyRings {
		out = append(out, &gcpOperatorCloud{srv: srv, inspector: inspector, ring: r})
	}
	return out
}

func (c *gcpOperatorCloud) config(t *testing.T, id identity) string {
	t.Helper()
	dir := t.TempDir()
	account := gcpAccounts[id].email
	saFile := filepath.Join(dir, "kms-sa.json")
	if err := c.srv.WriteServiceAccountFile(account, saFile); err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf(`key_ring = %q
endpoint = %q
service_account_file = %q
key_identifier_value = %q
key_labels = { owner = "platform-security" }
`, c.ring, c.srv.Addr(), saFile, opServerID)
	if id == cannotSign {
		policy := filepath.Join(dir, "key-policy.json")
		doc := `{"version": 3, "bindings": [{"role": "roles/cloudkms.signerVerifier", "members": ["serviceAccount:another-server@kmskeeper-test.iam.gserviceaccount.com"]}]}`
		if err := os.WriteFile(policy, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		data += fmt.Sprintf("key_policy_file = %q\n", policy)
	}
	return writeServerConf(t, "gcp_kms", data, true)
}

func (c *gcpOperatorCloud) denied(id identity) []string {
	switch id {
	case cannotList:
		return []string{"ListCryptoKeys", "grant the plugin's identity the permission cloudkms.cryptoKeys.list"}
	case cannotSign:
		return []string{"sign: ", "AsymmetricSign", "grant the plugin's identity the permission cloudkms.cryptoKeyVersions.useToSign"}
	case cannotCreate:
		return []string{"create: ", "CreateCryptoKey", "grant the plugin's identity the permission cloudkms.cryptoKeys.create"}
	}
	return nil
}

func (c *gcpOperatorCloud) breakSign(t *testing.T, f signFault) string {
	t.Cleanup(c.srv.ClearFaults)
	switch f {
	case signRefused:
		// INTERNAL is not retried.
		c.srv.InjectFault(cloudkms.Fault{Method: "AsymmetricSign", Code: codes.Internal, Message: "Internal error encountered (injected)."})
		return "sign: Cloud KMS AsymmetricSign on " + c.ring
	case signDamaged:
		// A bit flipped in transit: the signature's CRC32C no longer matches.
		c.srv.InjectFault(cloudkms.Fault{Method: "AsymmetricSign", Tamper: cloudkms.TamperSignature})
		return "signature_crc32c integrity check"
	}
	t.Fatalf("unknown sign fault %d", f)
	return ""
}

func (c *gcpOperatorCloud) breakList(t *testing.T) string {
	t.Cleanup(c.srv.ClearFaults)
	c.srv.InjectFault(cloudkms.Fault{Method: "ListCryptoKeys", Code: codes.Unavailable})
	return "code = Unavailable"
}

// seed makes one CryptoKey per SPIRE key ID, one version per generation,
// labelled as the plugins label them. This server's generations are its
// versions; another server's key is one generation, the CryptoKey.
func (c *gcpOperatorCloud) seed(t *testing.T, k seededKey) []string {
	t.Helper()
	name := c.ring + "/cryptoKeys/spire-key-" + k.serverID + "-" + k.keyID
	sum := sha1.Sum([]byte(k.trustDomain))
	key := cloudkms.SeedKey{
		Name:      name,
		Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256,
		Labels: map[string]string{
			"spire-server-td": hex.EncodeToString(sum[:]), "spire-server-id": k.serverID,
			"spire-active": "true", "spire-last-update": strconv.FormatInt(k.updated.Unix(), 10),
		},
		CreateTime: k.created[0],
	}
	var refs []string
	for i, created := range k.created {
		key.Versions = append(key.Versions, cloudkms.SeedVersion{CreateTime: created})
		refs = append(refs, fmt.Sprintf("%s/cryptoKeyVersions/%d", name, i+1))
	}
	if _, err := c.srv.SeedCryptoKey(key); err != nil {
		t.Fatal(err)
	}
	if k.serverID != opServerID {
		return []string{name}
	}
	return refs
}

func (c *gcpOperatorCloud) seedUnrelated(t *testing.T, created time.Time) string {
	t.Helper()
	name := c.ring + "/cryptoKeys/payments-signing-key"
	if _, err := c.srv.SeedCryptoKey(cloudkms.SeedKey{
		Name: name, Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, CreateTime: created,
		Versions: []cloudkms.SeedVersion{{CreateTime: created}},
	}); err != nil {
		t.Fatal(err)
	}
	return name + "/cryptoKeyVersions/1"
}

// state is every version of the key ring, live or retired (scheduled for
// destruction or destroyed), and every CryptoKey with its spire-active
// label as "active=<value>".
func (c *gcpOperatorCloud) state(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	keys := c.inspector.ListCryptoKeys(t.Context(), &kmspb.ListCryptoKeysRequest{Parent: c.ring})
	for {
		key, err := keys.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("listing %s: %v", c.ring, err)
		}
		out[key.GetName()] = "active=" + key.GetLabels()["spire-active"]
		versions := c.inspector.ListCryptoKeyVersions(t.Context(), &kmspb.ListCryptoKeyVersionsRequest{Parent: key.GetName()})
		for {
			v, err := versions.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				t.Fatalf("listing %s: %v", key.GetName(), err)
			}
			switch v.GetState() {
			case kmspb.CryptoKeyVersion_DESTROY_SCHEDULED, kmspb.CryptoKeyVersion_DESTROYED:
				out[v.GetName()] = stateRetired
			default:
				out[v.GetName()] = stateLive
			}
		}
	}
	return out
}

// retired: a version is scheduled for destruction; a whole CryptoKey (an
// other server's key) has every version so and is marked inactive, so that
// no server lists it again.
func (c *gcpOperatorCloud) retired(state map[string]string, ref string) bool {
	if strings.Contains(ref, "/cryptoKeyVersions/") {
		return state[ref] == stateRetired
	}
	if state[ref] != "active=false" {
		return false
	}
	for k, v := range state {
		if strings.HasPrefix(k, ref+"/cryptoKeyVersions/") && v != stateRetired {
			return false
		}
	}
	return true
}

func (c *gcpOperatorCloud) advance(d time.Duration) { c.srv.Clock().Advance(d) }
