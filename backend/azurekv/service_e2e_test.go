package azurekv

import (
	"context"
	"crypto"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// TestPurgeOnceDeletedThroughPlugin runs the built binary with
// purge_deleted_keys against a vault whose soft delete takes an hour (of the
// emulator's clock): the retirement of a rotated-out key does not wait for
// the purge, and the cleanup passes while the vault is deleting the key
// leave it soft-deleted without blocking anything. The plugin is then
// killed; the next one, once the deletion is done, purges the key at its
// first listing.
func TestPurgeOnceDeletedThroughPlugin(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{DeletionDelay: time.Hour})
	env := pluginEnv(t, srv, allEnv...)
	vault := srv.VaultURL(keyvault.DefaultVaultName)
	const extra = "purge_deleted_keys = true\nliveness_interval = \"1s\"\ncleanup_interval = \"1s\"\n"
	a := configured(t, env, vault, "server-a", extra)
	generate(t, a, "x509-CA-A", engine.ECP256)
	generate(t, a, "x509-CA-A", engine.ECP256) // rotates; the old generation is retired once settled
	deleted := func() []string { return srv.DeletedKeyNames(keyvault.DefaultVaultName) }
	for i := 0; i < 2 && len(deleted()) == 0; i++ {
		srv.Clock().Advance(engine.DefaultSettle + time.Minute)
		for end := time.Now().Add(8 * time.Second); len(deleted()) == 0 && time.Now().Before(end); {
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(t, func() bool { return len(deleted()) == 1 })
	retired := deleted()[0]

	// The vault is still deleting the key: cleanup passes go on, the key
	// stays soft-deleted, and the plugin serves.
	waitCleanups(t, a, 2)
	if !slices.Contains(deleted(), retired) {
		t.Fatalf("%s was purged while the vault was still deleting it", retired)
	}
	digest := sha256.Sum256([]byte("x"))
	if _, _, err := a.SignData(spireCtx(t), "x509-CA-A", digest[:], crypto.SHA256); err != nil {
		t.Fatalf("SignData while a purge waits: %v", err)
	}
	if err := a.Kill(); err != nil {
		t.Logf("Kill: %v", err)
	}

	// The deletion completes while no plugin runs; the next one purges.
	srv.Clock().Advance(time.Hour)
	configured(t, env, vault, "server-a", extra)
	waitFor(t, func() bool { return !slices.Contains(deleted(), retired) })
}

// TestThrottledWithoutRetryAfterThroughPlugin runs the built binary against
// a vault that throttles as the service does, 429 Throttled without a
// Retry-After header: a creation throttled for a while is retried with the
// plugin's own back-off and succeeds once the vault's window admits it; one
// throttled until the caller's deadline fails with ResourceExhausted saying
// so, before the deadline.
func TestThrottledWithoutRetryAfterThroughPlugin(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	p := configured(t, pluginEnv(t, srv, allEnv...), srv.VaultURL(keyvault.DefaultVaultName), "server-a", "")
	srv.SetThrottling(true)
	raw := rawClient(t, srv, keyvault.DefaultVaultName)
	fill := func() {
		t.Helper()
		// A vault creates 20 software keys per 10 s window.
		for i := range 20 {
			if _, err := raw.CreateKey(callCtx(t), "filler", azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC)}, nil); err != nil {
				t.Fatalf("filler %d: %v", i, err)
			}
		}
	}

	fill()
	before := srv.Counts()["CreateKey"]
	done := make(chan error, 1)
	go func() {
		_, err := p.GenerateKey(spireCtx(t), "x509-CA-A", engine.ECP256)
		done <- err
	}()
	waitFor(t, func() bool { return srv.Counts()["CreateKey"] >= before+2 }) // throttled, and tried again
	srv.Clock().Advance(11 * time.Second)                                    // the window admits it
	if err := <-done; err != nil {
		t.Fatalf("GenerateKey throttled for a while: %v", err)
	}

	srv.Clock().Advance(11 * time.Second)
	fill()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	_, err := p.GenerateKey(ctx, "JWT-Signer-A", engine.ECP256)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "still throttled") || ctx.Err() != nil {
		t.Errorf("GenerateKey throttled until the deadline = %v (context: %v), want ResourceExhausted before the deadline", err, ctx.Err())
	}
}

// TestRestartThroughServicePages runs the built binary against a vault
// whose listing pages are cut as the service cuts them: the soft-deleted
// names that sort before this server's key make the first page empty, with
// a nextLink. A restarted plugin still finds and serves its key.
func TestRestartThroughServicePages(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	env := pluginEnv(t, srv, allEnv...)
	vault := srv.VaultURL(keyvault.DefaultVaultName)
	a := configured(t, env, vault, "server-a", "")
	pk, err := a.GenerateKey(spireCtx(t), "x509-CA-A", engine.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	deleteNamesFirst(t, srv)
	b := configured(t, env, vault, "server-a", "")
	got, err := b.GetPublicKey(spireCtx(t), "x509-CA-A")
	if err != nil || got.Fingerprint != pk.Fingerprint {
		t.Fatalf("after the restart GetPublicKey = %+v, %v; want the key made before (%s)", got, err, pk.Fingerprint)
	}
}

// TestDisabledKeyThroughPlugin runs the built binary against a vault that
// treats a disabled key as the service does (still read, no longer
// signing): once someone disables the key the plugin serves, SignData
// fails with FailedPrecondition naming the fix, and a restarted plugin
// refuses the key at Configure the same way.
func TestDisabledKeyThroughPlugin(t *testing.T) {
	t.Parallel()
	srv := startEmulator(t, keyvault.Options{})
	env := pluginEnv(t, srv, allEnv...)
	vault := srv.VaultURL(keyvault.DefaultVaultName)
	a := configured(t, env, vault, "server-a", "")
	if _, err := a.GenerateKey(spireCtx(t), "x509-CA-A", engine.ECP256); err != nil {
		t.Fatal(err)
	}
	names := srv.KeyNames(keyvault.DefaultVaultName)
	if len(names) != 1 {
		t.Fatalf("vault holds %v, want one key", names)
	}
	raw := rawClient(t, srv, keyvault.DefaultVaultName)
	if _, err := raw.UpdateKey(callCtx(t), names[0], "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: ptr(false)}}, nil); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	_, _, err := a.SignData(spireCtx(t), "x509-CA-A", digest[:], crypto.SHA256)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("SignData with the disabled key = %v, want FailedPrecondition saying it is disabled", err)
	}
	b := launch(t, env)
	err = b.Configure(spireCtx(t), testTD, pluginData(vault, "server-a", ""))
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "disabled") || !strings.Contains(err.Error(), "enable it, or delete it") {
		t.Errorf("Configure over the disabled key = %v, want FailedPrecondition naming the fix", err)
	}
}
