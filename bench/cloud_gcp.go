package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/backend/gcpkms"
	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// gcpKeyRing is the key ring the plugin and the baselines use.
const gcpKeyRing = "projects/kmskeeper-bench/locations/global/keyRings/spire"

// gcpCloud is the Cloud KMS emulator (plaintext gRPC on loopback,
// anonymous), with one key ring.
type gcpCloud struct {
	srv    *cloudkms.Server
	client *kms.KeyManagementClient // raw SDK client for the baselines

	mu        sync.Mutex
	latencies map[op]time.Duration
	foreign   int // foreign keys seeded so far, so names never repeat
}

var gcpOps = map[op][]string{
	opSign:      {"AsymmetricSign"},
	opCreate:    {"CreateCryptoKey", "CreateCryptoKeyVersion"},
	opKeepAlive: {"UpdateCryptoKey"},
}

func startGCP(ctx context.Context, _ string) (*gcpCloud, error) {
	srv, err := cloudkms.Start(ctx, cloudkms.Options{KeyRings: []string{gcpKeyRing}})
	if err != nil {
		return nil, fmt.Errorf("starting the Cloud KMS emulator: %w", err)
	}
	client, err := kms.NewKeyManagementClient(ctx, srv.ClientOptions()...)
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("cloud KMS SDK client: %w", err)
	}
	return &gcpCloud{srv: srv, client: client, latencies: map[op]time.Duration{}}, nil
}

func (c *gcpCloud) name() string { return "gcp" }

func (c *gcpCloud) pluginData(serverID, extra string) string {
	return fmt.Sprintf("key_ring = %q\nendpoint = %q\nkey_identifier_value = %q\n%s", gcpKeyRing, c.srv.Addr(), serverID, extra)
}

func (c *gcpCloud) env() []string { return c.srv.Env() }

func (c *gcpCloud) setLatency(o op, d time.Duration, times int) {
	if times > 0 {
		for _, m := range gcpOps[o] {
			c.srv.InjectFault(cloudkms.Fault{Method: m, Latency: d, Times: times})
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d <= 0 {
		delete(c.latencies, o)
	} else {
		c.latencies[o] = d
	}
	c.srv.ClearFaults()
	for o, d := range c.latencies {
		for _, m := range gcpOps[o] {
			c.srv.InjectFault(cloudkms.Fault{Method: m, Latency: d})
		}
	}
}

func (c *gcpCloud) clearLatency() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.latencies)
	c.srv.ClearFaults()
}

func (c *gcpCloud) counts() map[string]int { return c.srv.Counts() }
func (c *gcpCloud) resetCounts()           { c.srv.ResetCounts() }

func (c *gcpCloud) opCount(o op) int {
	n, counts := 0, c.counts()
	for _, m := range gcpOps[o] {
		n += counts[m]
	}
	return n
}

func (c *gcpCloud) classify(operation string) callClass {
	if operation == "AsymmetricSign" {
		return classSign
	}
	return classManagement
}

func (c *gcpCloud) advance(d time.Duration) { c.srv.Clock().Advance(d) }
func (c *gcpCloud) now() time.Time          { return c.srv.Clock().Now() }

// backend builds the Cloud KMS backend as its Config.Open does for this
// plugin_data (key ring, plaintext loopback endpoint, no credentials), with
// one difference: spire-last-update labels are stamped with now, the
// engine's fake clock, instead of the real clock of the process.
func (c *gcpCloud) backend(ctx context.Context, serverID string, now func() time.Time) (engine.Backend, error) {
	b, err := gcpkms.New(ctx, gcpkms.Options{
		KeyRing:       gcpKeyRing,
		TrustDomain:   trustDomain,
		ServerID:      serverID,
		ClientOptions: c.srv.ClientOptions(),
		Now:           now,
		Logger:        hclog.NewNullLogger(),
	})
	if err != nil {
		return nil, fmt.Errorf("opening the gcp backend: %w", err)
	}
	return b, nil
}

func (c *gcpCloud) seedForeign(n int) error {
	c.mu.Lock()
	first := c.foreign
	c.foreign += n
	c.mu.Unlock()
	for i := first; i < first+n; i++ {
		name := fmt.Sprintf("%s/cryptoKeys/payments-app-key-%05d", gcpKeyRing, i)
		_, err := c.srv.SeedCryptoKey(cloudkms.SeedKey{
			Name:      name,
			Algorithm: kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256,
			Labels:    map[string]string{"owner": "payments"},
			// No versions: key material generation would dominate seeding,
			// and listing cost does not depend on it.
		})
		if err != nil {
			return fmt.Errorf("seeding foreign key %s: %w", name, err)
		}
	}
	return nil
}

func (c *gcpCloud) listPass(own int) (int, string) {
	return 1 + own, fmt.Sprintf("1 filtered ListCryptoKeys + %d ListCryptoKeyVersions", own)
}

func (c *gcpCloud) sdkKey(ctx context.Context, t engine.KeyType) (sigFunc, error) {
	var alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	switch t {
	case engine.ECP256:
		alg = kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256
	case engine.RSA2048:
		alg = kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256
	default:
		return nil, fmt.Errorf("cloud KMS SDK baseline: unsupported key type %v", t)
	}
	id := fmt.Sprintf("sdk-baseline-%s-%d", keySlug(t), time.Now().UnixNano())
	key, err := c.client.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{
		Parent:      gcpKeyRing,
		CryptoKeyId: id,
		CryptoKey: &kmspb.CryptoKey{
			Purpose:         kmspb.CryptoKey_ASYMMETRIC_SIGN,
			VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: alg},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cloud KMS SDK CreateCryptoKey: %w", err)
	}
	version := key.GetName() + "/cryptoKeyVersions/1"
	return func(ctx context.Context, digest []byte) ([]byte, error) {
		resp, err := c.client.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{
			Name:   version,
			Digest: &kmspb.Digest{Digest: &kmspb.Digest_Sha256{Sha256: digest}},
		})
		return resp.GetSignature(), err
	}, nil
}

func (c *gcpCloud) close() error {
	c.client.Close()
	return c.srv.Close()
}
