package reliability

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
	"github.com/kmskeeper/kmskeeper/pluginhost"
)

// The Cloud KMS setup's key rings and service accounts.
const (
	gcpKeyRing      = "projects/kmskeeper-reliability/locations/global/keyRings/spire"
	gcpOtherKeyRing = "projects/kmskeeper-reliability/locations/global/keyRings/other"
	gcpPlugin       = "spire-server@kmskeeper-reliability.iam.gserviceaccount.com"
	gcpOtherPlugin  = "other-server@kmskeeper-reliability.iam.gserviceaccount.com"
	gcpAdmin        = "test-admin@kmskeeper-reliability.iam.gserviceaccount.com"
)

// gcpOps maps the suite's operations to Cloud KMS methods. A creation is
// CreateCryptoKey the first time and CreateCryptoKeyVersion after; a
// keep-alive reads the key and then writes its labels (UpdateCryptoKey); a
// retirement of this server's generation destroys its version.
var gcpOps = map[op][]string{
	opList:      {"ListCryptoKeys"},
	opCreate:    {"CreateCryptoKey", "CreateCryptoKeyVersion"},
	opFetch:     {"GetPublicKey"},
	opSign:      {"AsymmetricSign"},
	opKeepAlive: {"UpdateCryptoKey"},
	opRetire:    {"DestroyCryptoKeyVersion"},
}

// gcpVault is the Cloud KMS emulator (plaintext gRPC on loopback, as a
// local emulator is) with identity checks on: the plugin authenticates with
// a service account key file given in plugin_data, and the test looks into
// the key ring as another, all-powerful account.
type gcpVault struct {
	srv    *cloudkms.Server
	admin  *kms.KeyManagementClient
	saFile map[string]string // email -> key file

	holds atomic.Int64

	mu     sync.Mutex
	seeded [][]byte                    // PKCS#8 of the seeded keys
	pubs   map[string]crypto.PublicKey // public keys by version name
}

func newGCPVault(t *testing.T) vault {
	t.Helper()
	dir := t.TempDir()
	srv, err := cloudkms.Start(context.Background(), cloudkms.Options{
		KeyRings: []string{gcpKeyRing, gcpOtherKeyRing},
		Principals: map[string][]string{
			gcpPlugin:      {"cloudkms.*"},
			gcpOtherPlugin: {"cloudkms.*"},
			gcpAdmin:       {"*"},
		},
	})
	if err != nil {
		t.Fatalf("starting the Cloud KMS emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	v := &gcpVault{srv: srv, saFile: map[string]string{}, pubs: map[string]crypto.PublicKey{}}
	for _, email := range []string{gcpPlugin, gcpOtherPlugin} {
		path := filepath.Join(dir, strings.Split(email, "@")[0]+".json")
		if err := srv.WriteServiceAccountFile(email, path); err != nil {
			t.Fatal(err)
		}
		v.saFile[email] = path
	}
	opts, err := srv.ClientOptionsAs(gcpAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if v.admin, err = kms.NewKeyManagementClient(context.Background(), opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.admin.Close() })
	return v
}

func (v *gcpVault) pluginData(serverID, extra string) string {
	return v.dataFor(gcpKeyRing, v.saFile[gcpPlugin], serverID, extra)
}

func (v *gcpVault) dataFor(ring, saFile, serverID, extra string) string {
	creds := ""
	if saFile != "" {
		creds = fmt.Sprintf("service_account_file = %q\n", saFile)
	}
	return fmt.Sprintf("key_ring = %q\nendpoint = %q\n%skey_identifier_value = %q\n%s", ring, v.srv.Addr(), creds, serverID, extra)
}

func (v *gcpVault) env() []string { return nil }

func (v *gcpVault) elsewhere(_ *testing.T, serverID string) string {
	return v.dataFor(gcpOtherKeyRing, v.saFile[gcpPlugin], serverID, "")
}

func (v *gcpVault) otherIdentities(_ *testing.T, serverID string) []string {
	return []string{
		v.dataFor(gcpKeyRing, v.saFile[gcpOtherPlugin], serverID, ""),
		// Application Default Credentials instead of the key file.
		v.dataFor(gcpKeyRing, "", serverID, ""),
	}
}

// keys lists the live (enabled or pending) versions of the trust domain's
// keys: one generation per version, for every server's keys.
func (v *gcpVault) keys(t *testing.T) []key {
	t.Helper()
	ctx := t.Context()
	td := gcpTrustDomainLabel()
	var out []key
	it := v.admin.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: gcpKeyRing})
	for {
		ck, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("listing the key ring: %v", err)
		}
		labels := ck.GetLabels()
		serverID := labels["spire-server-id"]
		prefix := gcpKeyRing + "/cryptoKeys/spire-key-" + serverID + "-"
		if labels["spire-server-td"] != td || serverID == "" || !strings.HasPrefix(ck.GetName(), prefix) {
			continue
		}
		keyID := strings.TrimPrefix(ck.GetName(), prefix)
		vit := v.admin.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: ck.GetName(), Filter: "state = ENABLED OR state = PENDING_GENERATION"})
		for {
			ver, err := vit.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				t.Fatalf("listing the versions of %s: %v", ck.GetName(), err)
			}
			pub, ok := v.publicKey(t, ver.GetName())
			if !ok {
				continue // destroyed since it was listed
			}
			created := ver.GetCreateTime().AsTime()
			out = append(out, key{
				Generation: engine.Generation{
					KeyID: keyID, Ref: ver.GetName(), ServerID: serverID,
					Created: created, Updated: gcpUpdated(created, labels["spire-last-update"]), Public: pub,
					Leases: gcpLeases(ver.GetName(), labels),
				},
				Fingerprint: fingerprint(t, pub),
				Meta:        labels,
			})
		}
	}
	return out
}

// publicKey returns the public key of version name, read once: a version's
// key never changes, and the scenarios poll the key ring. It reports false
// for a version destroyed since it was listed.
func (v *gcpVault) publicKey(t *testing.T, name string) (crypto.PublicKey, bool) {
	t.Helper()
	v.mu.Lock()
	pub, ok := v.pubs[name]
	v.mu.Unlock()
	if ok {
		return pub, true
	}
	pk, err := v.admin.GetPublicKey(t.Context(), &kmspb.GetPublicKeyRequest{Name: name})
	if status.Code(err) == codes.FailedPrecondition {
		return nil, false
	}
	if err != nil {
		t.Fatalf("public key of %s: %v", name, err)
	}
	block, _ := pem.Decode([]byte(pk.GetPem()))
	if block == nil {
		t.Fatalf("public key of %s: no PEM", name)
	}
	if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
		t.Fatalf("public key of %s: %v", name, err)
	}
	v.mu.Lock()
	v.pubs[name] = pub
	v.mu.Unlock()
	return pub, true
}

// gcpUpdated is a version's last sign of life as the backend reads it: its
// key's spire-last-update label or its creation, whichever is later.
func gcpUpdated(created time.Time, label string) time.Time {
	if n, err := strconv.ParseInt(label, 10, 64); err == nil && time.Unix(n, 0).After(created) {
		return time.Unix(n, 0)
	}
	return created
}

// gcpLeases reads the leases a CryptoKey's labels record on its version
// ref, as docs/security.md lays them out: one label per holder,
// spire-lease-<holder>, whose value joins with "_" the holder's entries
// "<version>-<unix ms>", with "-p" appended while pending. The test reads
// them on its own, so that a layout the backend misreads is not taken on
// trust.
func gcpLeases(ref string, labels map[string]string) []engine.Lease {
	_, num, _ := strings.Cut(ref, "/cryptoKeyVersions/")
	var out []engine.Lease
	for name, value := range labels {
		holder, ok := strings.CutPrefix(name, "spire-lease-")
		if !ok || holder == "" {
			continue
		}
		for _, e := range strings.Split(value, "_") {
			e, pending := strings.CutSuffix(e, "-p")
			v, ms, ok := strings.Cut(e, "-")
			n, err := strconv.ParseInt(ms, 10, 64)
			if !ok || err != nil || v != num {
				continue
			}
			out = append(out, engine.Lease{Holder: holder, Ref: ref, Renewed: time.UnixMilli(n), Pending: pending})
		}
	}
	return out
}

// gcpTrustDomainLabel is the spire-server-td value: the hex SHA-1 of the
// trust domain, as SPIRE's gcp_kms writes it.
func gcpTrustDomainLabel() string {
	sum := sha1.Sum([]byte(trustDomain))
	return hex.EncodeToString(sum[:])
}

func (v *gcpVault) seed(t *testing.T, serverID, keyID string, created, updated time.Time) key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	v.seeded = append(v.seeded, der)
	v.mu.Unlock()
	created = created.UTC().Truncate(time.Microsecond)
	name := gcpKeyRing + "/cryptoKeys/spire-key-" + serverID + "-" + keyID
	label := strconv.FormatInt(updated.Unix(), 10)
	if _, err := v.srv.SeedCryptoKey(cloudkms.SeedKey{
		Name:      name,
		Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256,
		Labels: map[string]string{
			"spire-server-td": gcpTrustDomainLabel(), "spire-server-id": serverID,
			"spire-active": "true", "spire-last-update": label,
		},
		CreateTime: created,
		Versions:   []cloudkms.SeedVersion{{Key: k, CreateTime: created}},
	}); err != nil {
		t.Fatal(err)
	}
	return key{
		Generation: engine.Generation{
			KeyID: keyID, Ref: name + "/cryptoKeyVersions/1", ServerID: serverID,
			Created: created, Updated: gcpUpdated(created, label), Public: k.Public(),
		},
		Fingerprint: fingerprint(t, k.Public()),
	}
}

func (v *gcpVault) now(*testing.T) time.Time { return v.srv.Clock().Now() }

func (v *gcpVault) advance(_ *testing.T, d time.Duration) { v.srv.Clock().Advance(d) }

func (v *gcpVault) methods(t *testing.T, o op) []string {
	t.Helper()
	ms, ok := gcpOps[o]
	if !ok {
		t.Fatalf("no Cloud KMS method for %s", o)
	}
	return ms
}

// hold delays the next request of o by d. The emulator delays a request
// before running it, so "after the operation took effect" is had by holding
// the request that follows it: after a creation (CreateCryptoKey or
// CreateCryptoKeyVersion took effect) the plugin fetches the new version's
// public key before it swaps the key in, so that fetch is held.
func (v *gcpVault) hold(t *testing.T, o op, after bool, d time.Duration) func() bool {
	t.Helper()
	methods := v.methods(t, o)
	if after {
		if o != opCreate {
			t.Fatalf("no Cloud KMS request follows %s to hold", o)
		}
		methods = gcpOps[opFetch]
	}
	// A fault without a code never answers, so its Message is free to mark
	// this hold and to tell when a request took it.
	mark := fmt.Sprintf("hold %d", v.holds.Add(1))
	for _, m := range methods {
		v.srv.InjectFault(cloudkms.Fault{Method: m, Latency: d, Times: 1, Message: mark})
	}
	return func() bool {
		n := 0
		for _, f := range v.srv.Faults() {
			if f.Message == mark {
				n++
			}
		}
		return n < len(methods)
	}
}

// gcpRetryAfter is the delay a "429 with Retry-After" advises on Cloud KMS:
// longer than any first pause of the backend's own quota backoff (at most
// 1 s), so that a retry that honours the advice is told apart from one that
// does not (checkAdvisedWait).
const gcpRetryAfter = 1500 * time.Millisecond

// inject maps the suite's faults to gRPC codes as Google's front end
// answers them. A 429 with Retry-After is RESOURCE_EXHAUSTED with a
// google.rpc.RetryInfo advising gcpRetryAfter (and a QuotaFailure), without
// it plain RESOURCE_EXHAUSTED. A dropped connection is one: the emulator
// closes the TCP connection the call came on, and the client's transport
// fails the call with UNAVAILABLE.
func (v *gcpVault) inject(t *testing.T, o op, kind faultKind, count int) {
	t.Helper()
	f := cloudkms.Fault{Times: count}
	switch kind {
	case throttledRetryAfter:
		f.Code, f.RetryDelay = codes.ResourceExhausted, gcpRetryAfter
	case throttled:
		f.Code = codes.ResourceExhausted
	case serverError:
		f.Code = codes.Internal
	case unavailable:
		f.Code = codes.Unavailable
	case dropped:
		f.Drop = true
	default:
		t.Fatalf("unknown fault %s", kind)
	}
	for _, m := range v.methods(t, o) {
		f.Method = m
		v.srv.InjectFault(f)
	}
}

func (v *gcpVault) slow(t *testing.T, o op, d time.Duration) {
	t.Helper()
	for _, m := range v.methods(t, o) {
		v.srv.InjectFault(cloudkms.Fault{Method: m, Latency: d})
	}
}

func (v *gcpVault) clear(*testing.T) { v.srv.ClearFaults() }

func (v *gcpVault) faultsSpent(*testing.T) bool {
	for _, f := range v.srv.Faults() {
		if f.Times > 0 {
			return false
		}
	}
	return true
}

// absorbs: the backend retries RESOURCE_EXHAUSTED and UNAVAILABLE of
// idempotent calls (all but creations) with backoff until the budget ends,
// and INTERNAL (the suite's 500) a few times, more than transientCount. A
// creation is retried on RESOURCE_EXHAUSTED only: the request was refused
// before anything was made, whereas another failure may hide a version that
// was, and a second try would make another.
func (v *gcpVault) absorbs(o op, kind faultKind) bool {
	if o == opCreate {
		return kind == throttled || kind == throttledRetryAfter
	}
	return true
}

// fetchesAfterCreate: the public key of a new version is read with
// GetPublicKey once it is generated.
func (v *gcpVault) fetchesAfterCreate() bool { return true }

// leaseCarriesKey: UpdateCryptoKey answers with the CryptoKey, not a
// version's public key.
func (v *gcpVault) leaseCarriesKey() bool { return false }

// checkAdvisedWait checks, from the emulator's request log, that the plugin
// honoured the RetryInfo of every request of o a "429 with Retry-After"
// answered: the next request for the same method and resource arrived no
// earlier than the advised delay after it, and the backend counted each such
// retry (kmskeeper.gcpkms.retries with reason resource_exhausted). Both are
// orderings, not timings: a client that honours the advice cannot come back
// sooner.
func (v *gcpVault) checkAdvisedWait(t *testing.T, p *pluginhost.Plugin, o op) {
	t.Helper()
	methods := map[string]bool{}
	for _, m := range v.methods(t, o) {
		methods[m] = true
	}
	reqs := v.srv.Requests()
	throttled := map[string]int{}
	for i, r := range reqs {
		if !methods[r.Method] || !r.Injected || r.Code != codes.ResourceExhausted {
			continue
		}
		throttled[r.Method]++
		for _, next := range reqs[i+1:] {
			if next.Method != r.Method || next.Resource != r.Resource {
				continue
			}
			if gap := next.Received.Sub(r.Received); gap < gcpRetryAfter {
				t.Errorf("%s on %s was retried %v after an answer advising %v", r.Method, r.Resource, gap, gcpRetryAfter)
			}
			break
		}
	}
	if len(throttled) == 0 {
		t.Errorf("no %s request was answered by the throttle advising a delay", o)
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for m, n := range throttled {
		seen := 0
		if _, err := p.WaitMetric(ctx, func(mt pluginhost.Metric) bool {
			// Counters arrive summed over the plugin's metrics interval.
			if mt.Name() == "kmskeeper.gcpkms.retries" && mt.Label("method") == m && mt.Label("reason") == "resource_exhausted" {
				seen += int(mt.Value)
			}
			return seen >= n
		}); err != nil {
			t.Errorf("the plugin counted %d retries of %s for resource_exhausted, want %d (one per throttled answer): %v", seen, m, n, err)
		}
	}
}

func (v *gcpVault) persistentCode(kind faultKind) codes.Code {
	switch kind {
	case throttled, throttledRetryAfter:
		return codes.ResourceExhausted
	}
	return codes.Unavailable
}

// secrets are the service accounts' private keys (in every encoding a
// leak would show), the header of every self-signed JWT the plugin's client
// sends (a bearer token in a log line starts with it), and the private
// material of the keys the test seeded (the plugin never sees Cloud KMS's).
func (v *gcpVault) secrets(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, email := range []string{gcpPlugin, gcpOtherPlugin} {
		js, err := v.srv.ServiceAccountJSON(email)
		if err != nil {
			t.Fatal(err)
		}
		var sa struct {
			PrivateKey   string `json:"private_key"`
			PrivateKeyID string `json:"private_key_id"`
		}
		if err := json.Unmarshal(js, &sa); err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode([]byte(sa.PrivateKey))
		if block == nil {
			t.Fatalf("service account %s: no PEM private key", email)
		}
		out = append(out, privateMaterial(t, block.Bytes)...)
		// Each PEM line of the key is itself a give-away.
		for _, l := range strings.Split(sa.PrivateKey, "\n") {
			if len(l) == 64 {
				out = append(out, l)
			}
		}
		header, err := json.Marshal(struct {
			Alg string `json:"alg"`
			Typ string `json:"typ"`
			Kid string `json:"kid"`
		}{"RS256", "JWT", sa.PrivateKeyID})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, base64.RawURLEncoding.EncodeToString(header)+".")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, der := range v.seeded {
		out = append(out, privateMaterial(t, der)...)
	}
	return out
}
