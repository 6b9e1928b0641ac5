package reliability

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// Names of the Azure setup's second vault and second app registration.
const (
	azureOtherVault  = "other-vault"
	azureOtherApp    = "7d1e4c2a-5b3f-4a8e-9c6d-1f2e3a4b5c06"
	azureOtherSecret = "other-app-secret-8Qx~reliability-Zt3"
)

// azureOps maps the suite's operations to Key Vault's.
var azureOps = map[op]string{
	opList:      "ListKeys",
	opCreate:    "CreateKey",
	opFetch:     "GetKey",
	opSign:      "Sign",
	opKeepAlive: "UpdateKey",
	opRetire:    "DeleteKey",
}

// azureVault is the Key Vault emulator (a Premium vault, and a second one
// for re-Configure) with its state kept in a data directory, which the test
// reads as its view of the vault: reading it needs no request, so the view
// never consumes an injected fault nor moves a counter.
type azureVault struct {
	srv     *keyvault.Server
	dataDir string
	holds   atomic.Int64
}

func newAzureVault(t *testing.T) vault {
	t.Helper()
	return startAzureVault(t, nil)
}

// startAzureVault is newAzureVault with its emulator's options changed by
// edit (when not nil).
func startAzureVault(t *testing.T, edit func(*keyvault.Options)) *azureVault {
	t.Helper()
	dir := t.TempDir()
	opts := keyvault.Options{
		Vaults:       []keyvault.VaultSpec{{Name: keyvault.DefaultVaultName}, {Name: azureOtherVault}},
		DataDir:      filepath.Join(dir, "data"),
		ExtraClients: map[string]string{azureOtherApp: azureOtherSecret},
	}
	if edit != nil {
		edit(&opts)
	}
	srv, err := keyvault.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting the Key Vault emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	// ca.pem for SSL_CERT_FILE.
	if _, _, err := srv.WriteFiles(filepath.Join(dir, "env")); err != nil {
		t.Fatal(err)
	}
	return &azureVault{srv: srv, dataDir: filepath.Join(dir, "data")}
}

// pluginData gives the app registration's client secret in plugin_data
// (tenant_id, app_id, app_secret), so that the secret flows through the
// configuration path that the secrets scan watches.
func (v *azureVault) pluginData(serverID, extra string) string {
	return v.dataFor(keyvault.DefaultVaultName, v.srv.ClientID(), v.srv.ClientSecret(), serverID, extra)
}

func (v *azureVault) dataFor(vaultName, app, secret, serverID, extra string) string {
	creds := ""
	if app != "" {
		creds = fmt.Sprintf("tenant_id = %q\napp_id = %q\napp_secret = %q\n", v.srv.TenantID(), app, secret)
	}
	return fmt.Sprintf("key_vault_uri = %q\n%skey_identifier_value = %q\n%s", v.srv.VaultURL(vaultName), creds, serverID, extra)
}

// env gives the plugin the emulator's CA and authority only: the
// credentials come from plugin_data, not from AZURE_CLIENT_SECRET.
func (v *azureVault) env() []string {
	var out []string
	for _, kv := range v.srv.Env() {
		if strings.HasPrefix(kv, "SSL_CERT_FILE=") || strings.HasPrefix(kv, "AZURE_AUTHORITY_HOST=") {
			out = append(out, kv)
		}
	}
	return out
}

func (v *azureVault) elsewhere(_ *testing.T, serverID string) string {
	return v.dataFor(azureOtherVault, v.srv.ClientID(), v.srv.ClientSecret(), serverID, "")
}

func (v *azureVault) otherIdentities(_ *testing.T, serverID string) []string {
	return []string{
		v.dataFor(keyvault.DefaultVaultName, azureOtherApp, azureOtherSecret, serverID, ""),
		// The default credential chain instead of the client secret.
		v.dataFor(keyvault.DefaultVaultName, "", "", serverID, ""),
	}
}

// azureState is the part of the emulator's state file the test reads.
type azureState struct {
	TokenKey []byte `json:"tokenKey"`
	CAKey    []byte `json:"caKey"`
	Vaults   map[string]struct {
		Keys    map[string]*azureKey `json:"keys"`
		Deleted map[string]*azureKey `json:"deleted"`
	} `json:"vaults"`
}

type azureKey struct {
	Name     string `json:"name"`
	Latest   string `json:"latest"`
	Versions map[string]*struct {
		PKCS8   []byte            `json:"pkcs8"`
		Enabled bool              `json:"enabled"`
		Created int64             `json:"created"`
		Updated int64             `json:"updated"`
		Tags    map[string]string `json:"tags"`
	} `json:"versions"`
}

func (v *azureVault) state(t *testing.T) azureState {
	t.Helper()
	var st azureState
	data, err := os.ReadFile(filepath.Join(v.dataDir, "azurekv-state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return st // nothing was stored yet
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("reading the emulator's state: %v", err)
	}
	return st
}

// keys lists the live keys of the main vault laid out as SPIRE's (name
// spire-key-<UUID>-<key ID>, the trust domain's tag): one generation per
// key, as the backend sees them.
func (v *azureVault) keys(t *testing.T) []key {
	t.Helper()
	st := v.state(t)
	var out []key
	for _, k := range st.Vaults[keyvault.DefaultVaultName].Keys {
		kv := k.Versions[k.Latest]
		if kv == nil || kv.Tags["spire-server-td"] != trustDomain || !strings.HasPrefix(k.Name, "spire-key-") || len(k.Name) <= len("spire-key-")+37 {
			continue
		}
		priv, err := x509.ParsePKCS8PrivateKey(kv.PKCS8)
		if err != nil {
			t.Fatalf("key %s: %v", k.Name, err)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			t.Fatalf("key %s: %T is not a signing key", k.Name, priv)
		}
		pub := signer.Public()
		out = append(out, key{
			Generation: engine.Generation{
				KeyID:    k.Name[len("spire-key-")+37:],
				Ref:      k.Name,
				Version:  k.Latest,
				ServerID: kv.Tags["spire-server-id"],
				Created:  time.Unix(kv.Created, 0),
				Updated:  time.Unix(kv.Updated, 0),
				Disabled: !kv.Enabled,
				Public:   pub,
				Leases:   azureLeases(k.Name, kv.Tags["spire-leases"]),
			},
			Fingerprint: fingerprint(t, pub),
			Meta:        kv.Tags,
		})
	}
	return out
}

// azureLeases reads the leases a spire-leases tag of key ref records, as
// docs/security.md lays it out: "recent=<n>;<holder>:<unix ms>;...", with
// ":p" after a pending lease. The test reads it on its own, so that a
// layout the backend misreads is not taken on trust.
func azureLeases(ref, tag string) []engine.Lease {
	var out []engine.Lease
	for _, e := range strings.Split(tag, ";") {
		parts := strings.Split(e, ":")
		if len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && parts[2] != "p") {
			continue // the creation count, or not a lease
		}
		ms, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, engine.Lease{Holder: parts[0], Ref: ref, Renewed: time.UnixMilli(ms), Pending: len(parts) == 3})
	}
	return out
}

func (v *azureVault) seed(t *testing.T, serverID, keyID string, created, updated time.Time) key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	name := "spire-key-" + uuid.NewString() + "-" + keyID
	if _, err := v.srv.SeedKey(keyvault.DefaultVaultName, keyvault.SeedKey{
		Name:    name,
		Signer:  k,
		KeyOps:  []string{"sign", "verify"},
		Tags:    map[string]string{"spire-server-td": trustDomain, "spire-server-id": serverID},
		Created: created,
		Updated: updated,
	}); err != nil {
		t.Fatal(err)
	}
	// Key Vault keeps times in whole seconds.
	return key{
		Generation: engine.Generation{
			KeyID: keyID, Ref: name, ServerID: serverID,
			Created: time.Unix(created.Unix(), 0), Updated: time.Unix(updated.Unix(), 0), Public: k.Public(),
		},
		Fingerprint: fingerprint(t, k.Public()),
	}
}

func (v *azureVault) now(*testing.T) time.Time { return v.srv.Clock().Now() }

func (v *azureVault) advance(_ *testing.T, d time.Duration) { v.srv.Clock().Advance(d) }

// hold delays the next request of o by d. The emulator delays a request
// before processing it, so "after" cannot be had precisely; the one point
// that asks for it, after the create and before the swap, collapses on Key
// Vault into the moment the create takes effect: CreateKey's answer carries
// the public key (there is no fetch between creation and the swap), so the
// only window is the answer in flight. The crash scenarios kill at a random
// moment of a window a quarter longer than the hold, which lands some kills
// just after the emulator created the key and before the plugin swapped it
// in.
func (v *azureVault) hold(t *testing.T, o op, _ bool, d time.Duration) func() bool {
	t.Helper()
	// A latency-only fault never answers, so its Message is free to mark
	// this hold and to tell when a request consumed it.
	mark := fmt.Sprintf("hold %d", v.holds.Add(1))
	v.srv.InjectFault(keyvault.Fault{Op: v.opName(t, o), Latency: keyvault.Duration(d), Count: 1, Message: mark})
	return func() bool {
		for _, f := range v.srv.Faults() {
			if f.Message == mark {
				return false
			}
		}
		return true
	}
}

func (v *azureVault) opName(t *testing.T, o op) string {
	t.Helper()
	name, ok := azureOps[o]
	if !ok {
		t.Fatalf("no Key Vault operation for %s", o)
	}
	return name
}

func (v *azureVault) inject(t *testing.T, o op, kind faultKind, count int) {
	t.Helper()
	f := keyvault.Fault{Op: v.opName(t, o), Count: count}
	switch kind {
	case throttledRetryAfter:
		f.Status, f.RetryAfter = 429, keyvault.Duration(time.Second)
	case throttled:
		f.Status = 429
	case serverError:
		f.Status = 500
	case unavailable:
		f.Status = 503
	case dropped:
		f.Drop = true
	default:
		t.Fatalf("unknown fault %s", kind)
	}
	v.srv.InjectFault(f)
}

func (v *azureVault) slow(t *testing.T, o op, d time.Duration) {
	t.Helper()
	v.srv.InjectFault(keyvault.Fault{Op: v.opName(t, o), Latency: keyvault.Duration(d)})
}

func (v *azureVault) clear(*testing.T) { v.srv.ClearFaults() }

func (v *azureVault) faultsSpent(*testing.T) bool {
	for _, f := range v.srv.Faults() {
		if f.Count > 0 {
			return false
		}
	}
	return true
}

// absorbs: azcore retries 408, 429, 5xx and dropped connections of every
// request, honouring Retry-After, within the call's budget.
func (v *azureVault) absorbs(op, faultKind) bool { return true }

// fetchesAfterCreate: CreateKey's answer carries the public key.
func (v *azureVault) fetchesAfterCreate() bool { return false }

// leaseCarriesKey: UpdateKey's answer carries the public key.
func (v *azureVault) leaseCarriesKey() bool { return true }

func (v *azureVault) persistentCode(kind faultKind) codes.Code {
	switch kind {
	case throttled, throttledRetryAfter:
		return codes.ResourceExhausted
	}
	return codes.Unavailable
}

// secrets are both apps' client secrets, the header of every bearer token
// the emulator issues (a token in a log line starts with it), a token, the
// emulator's token-signing and CA keys, and every key's private material,
// live or deleted.
func (v *azureVault) secrets(t *testing.T) []string {
	t.Helper()
	tok, err := v.srv.IssueToken(v.srv.ClientID(), keyvault.ResourceVault, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := strings.Cut(tok, ".")
	out := []string{v.srv.ClientSecret(), azureOtherSecret, header + ".", tok}
	st := v.state(t)
	if len(st.TokenKey) > 0 {
		out = append(out, ecMaterial(t, st.TokenKey)...)
	}
	for _, vs := range st.Vaults {
		for _, m := range []map[string]*azureKey{vs.Keys, vs.Deleted} {
			for _, k := range m {
				for _, kv := range k.Versions {
					out = append(out, privateMaterial(t, kv.PKCS8)...)
				}
			}
		}
	}
	return out
}

// ecMaterial returns the encodings of a SEC 1 EC private key a leak would
// show.
func ecMaterial(t *testing.T, der []byte) []string {
	t.Helper()
	k, err := x509.ParseECPrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return privateMaterial(t, pkcs8)
}
