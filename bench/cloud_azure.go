package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// azureCloud is the Key Vault emulator serving one premium vault.
type azureCloud struct {
	srv    *keyvault.Server
	vault  string
	client *azkeys.Client // raw SDK client for the baselines

	mu        sync.Mutex
	latencies map[op]time.Duration
	foreign   int // foreign keys seeded so far, so names never repeat // standing latencies, re-applied after a change
}

var azureOps = map[op]string{opSign: "Sign", opCreate: "CreateKey", opKeepAlive: "UpdateKey"}

func startAzure(ctx context.Context, dir string) (*azureCloud, error) {
	srv, err := keyvault.Start(ctx, keyvault.Options{})
	if err != nil {
		return nil, fmt.Errorf("starting the Key Vault emulator: %w", err)
	}
	// The plugin process trusts the emulator through SSL_CERT_FILE (Env).
	if _, _, err := srv.WriteFiles(filepath.Join(dir, "azure")); err != nil {
		srv.Close()
		return nil, fmt.Errorf("writing the Key Vault emulator's files: %w", err)
	}
	c := &azureCloud{srv: srv, vault: keyvault.DefaultVaultName, latencies: map[op]time.Duration{}}
	if c.client, err = srv.KeysClient(srv.VaultURL(c.vault)); err != nil {
		srv.Close()
		return nil, fmt.Errorf("azure SDK client: %w", err)
	}
	return c, nil
}

func (c *azureCloud) name() string { return "azure" }

func (c *azureCloud) pluginData(serverID, extra string) string {
	return fmt.Sprintf("key_vault_uri = %q\ntenant_id = %q\napp_id = %q\napp_secret = %q\nkey_identifier_value = %q\n%s",
		c.srv.VaultURL(c.vault), c.srv.TenantID(), c.srv.ClientID(), c.srv.ClientSecret(), serverID, extra)
}

func (c *azureCloud) env() []string { return c.srv.Env() }

func (c *azureCloud) setLatency(o op, d time.Duration, times int) {
	if times > 0 {
		c.srv.InjectFault(keyvault.Fault{Op: azureOps[o], Latency: keyvault.Duration(d), Count: times})
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
		c.srv.InjectFault(keyvault.Fault{Op: azureOps[o], Latency: keyvault.Duration(d)})
	}
}

func (c *azureCloud) clearLatency() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.latencies)
	c.srv.ClearFaults()
}

func (c *azureCloud) counts() map[string]int { return c.srv.Counts() }
func (c *azureCloud) resetCounts()           { c.srv.ResetCounts() }
func (c *azureCloud) opCount(o op) int       { return c.counts()[azureOps[o]] }

func (c *azureCloud) classify(operation string) callClass {
	switch operation {
	case "Sign":
		return classSign
	case "Challenge", "Token", "ManagedIdentityToken":
		return classAuth
	}
	return classManagement
}

func (c *azureCloud) advance(d time.Duration) { c.srv.Clock().Advance(d) }
func (c *azureCloud) now() time.Time          { return c.srv.Clock().Now() }

// backend opens the Azure backend from plugin_data: it writes no times of
// its own (Created and Updated are the vault's).
func (c *azureCloud) backend(ctx context.Context, serverID string, _ func() time.Time) (engine.Backend, error) {
	return openFromPluginData(ctx, c, serverID)
}

func (c *azureCloud) seedForeign(n int) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	c.mu.Lock()
	first := c.foreign
	c.foreign += n
	c.mu.Unlock()
	for i := first; i < first+n; i++ {
		name := fmt.Sprintf("payments-app-key-%05d", i)
		if _, err := c.srv.SeedKey(c.vault, keyvault.SeedKey{Name: name, Signer: key, Tags: map[string]string{"owner": "payments"}}); err != nil {
			return fmt.Errorf("seeding foreign key %s: %w", name, err)
		}
	}
	return nil
}

func (c *azureCloud) listPass(int) (int, string) {
	const pageSize = 25 // Key Vault's maximum maxresults
	keys := len(c.srv.KeyNames(c.vault))
	pages := max(1, (keys+pageSize-1)/pageSize)
	return pages, fmt.Sprintf("ListKeys ⌈%d keys in the vault / 25⌉ = %d pages", keys, pages)
}

func (c *azureCloud) sdkKey(ctx context.Context, t engine.KeyType) (sigFunc, error) {
	params := azkeys.CreateKeyParameters{}
	var alg azkeys.SignatureAlgorithm
	switch t {
	case engine.ECP256:
		params.Kty, params.Curve, alg = ptr(azkeys.KeyTypeEC), ptr(azkeys.CurveNameP256), azkeys.SignatureAlgorithmES256
	case engine.RSA2048:
		params.Kty, params.KeySize, alg = ptr(azkeys.KeyTypeRSA), ptr(int32(2048)), azkeys.SignatureAlgorithmRS256
	default:
		return nil, fmt.Errorf("azure SDK baseline: unsupported key type %v", t)
	}
	name := fmt.Sprintf("sdk-baseline-%s-%d", keySlug(t), time.Now().UnixNano())
	resp, err := c.client.CreateKey(ctx, name, params, nil)
	if err != nil {
		return nil, fmt.Errorf("azure SDK CreateKey: %w", err)
	}
	version := resp.Key.KID.Version()
	return func(ctx context.Context, digest []byte) ([]byte, error) {
		resp, err := c.client.Sign(ctx, name, version, azkeys.SignParameters{Algorithm: &alg, Value: digest}, nil)
		return resp.Result, err
	}, nil
}

func (c *azureCloud) close() error { return c.srv.Close() }

func ptr[T any](v T) *T { return &v }
