package reliability

import (
	"context"
	"fmt"
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

// The Key Vault service's awkward answers, as the emulator gives them by
// default, met by the built binary.

// azureService starts a harness on the Key Vault emulator with its options
// changed by edit, and returns it with the emulator and an SDK client of
// the default vault.
func azureService(t *testing.T, edit func(*keyvault.Options)) (*harness, *keyvault.Server, *azkeys.Client) {
	t.Helper()
	var av *azureVault
	h := newHarness(t, setup{name: "azure", new: func(t *testing.T) vault {
		av = startAzureVault(t, edit)
		return av
	}})
	raw, err := av.srv.KeysClient(av.srv.VaultURL(keyvault.DefaultVaultName))
	if err != nil {
		t.Fatal(err)
	}
	return h, av.srv, raw
}

// TestAzurePurgeOnceDeleted: with purge_deleted_keys against a vault whose
// soft delete takes an hour (of the emulator's clock), the retirement of a
// rotated-out key does not wait for the purge, and the cleanup passes while
// the vault is deleting the key leave it soft-deleted without blocking
// anything. The plugin is then killed; the next one, once the deletion is
// done, purges the key at its first listing.
func TestAzurePurgeOnceDeleted(t *testing.T) {
	t.Parallel()
	h, srv, _ := azureService(t, func(o *keyvault.Options) { o.DeletionDelay = time.Hour })
	const extra = "purge_deleted_keys = true\nliveness_interval = \"1s\"\ncleanup_interval = \"1s\"\n"
	a := h.start("server-a", extra)
	h.mustGenerate(a, "x509-CA-A")
	pk := h.mustGenerate(a, "x509-CA-A") // rotates; the old generation is retired once settled
	deleted := func() []string { return srv.DeletedKeyNames(keyvault.DefaultVaultName) }
	for i := 0; i < 2 && len(deleted()) == 0; i++ {
		srv.Clock().Advance(engine.DefaultSettle + time.Minute)
		waitPasses(t, a, cleanupDone, countLogs(a, cleanupDone), 2)
	}
	waitFor(t, "the old generation's retirement", func() bool { return len(deleted()) == 1 })
	retired := deleted()[0]

	// The vault is still deleting the key: cleanup passes go on, the key
	// stays soft-deleted, and the plugin serves.
	waitPasses(t, a, cleanupDone, countLogs(a, cleanupDone), 2)
	if !slices.Contains(deleted(), retired) {
		t.Fatalf("%s was purged while the vault was still deleting it", retired)
	}
	if err := h.sign(callCtx(t), a, pk); err != nil {
		t.Fatalf("signing while a purge waits: %v", err)
	}
	kill(t, a)

	// The deletion completes while no plugin runs; the next one purges.
	srv.Clock().Advance(time.Hour)
	h.start("server-a", extra)
	waitFor(t, "the purge by the next plugin", func() bool { return !slices.Contains(deleted(), retired) })
}

// TestAzureThrottledWithoutRetryAfter: against a vault that throttles as
// the service does, 429 Throttled without a Retry-After header, a creation
// throttled for a while is retried with the plugin's own back-off and
// succeeds once the vault's window admits it; one throttled until the
// caller's deadline fails with ResourceExhausted saying so, before the
// deadline.
func TestAzureThrottledWithoutRetryAfter(t *testing.T) {
	t.Parallel()
	h, srv, raw := azureService(t, nil)
	p := h.start("server-a", "")
	srv.SetThrottling(true)
	fill := func() {
		t.Helper()
		// A vault creates 20 software keys per 10 s window.
		for i := range 20 {
			if _, err := raw.CreateKey(callCtx(t), "filler", azkeys.CreateKeyParameters{Kty: new(azkeys.KeyTypeEC)}, nil); err != nil {
				t.Fatalf("filler %d: %v", i, err)
			}
		}
	}

	fill()
	before := srv.Counts()["CreateKey"]
	done := make(chan error, 1)
	go func() {
		_, err := h.generate(p, "x509-CA-A")
		done <- err
	}()
	waitFor(t, "a throttled creation tried again", func() bool { return srv.Counts()["CreateKey"] >= before+2 })
	srv.Clock().Advance(11 * time.Second) // the window admits it
	if err := <-done; err != nil {
		t.Fatalf("GenerateKey throttled for a while: %v", err)
	}

	srv.Clock().Advance(11 * time.Second)
	fill()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	_, err := p.GenerateKey(ctx, "JWT-Signer-A", engine.ECP256)
	if status.Code(h.record(err)) != codes.ResourceExhausted || !strings.Contains(err.Error(), "still throttled") || ctx.Err() != nil {
		t.Errorf("GenerateKey throttled until the deadline = %v (context: %v), want ResourceExhausted before the deadline", err, ctx.Err())
	}
}

// TestAzureRestartThroughServicePages: soft-deleted names that sort before
// this server's key make the first page of the vault's listing empty, with
// a nextLink, as on the service. A restarted plugin still finds and serves
// its key.
func TestAzureRestartThroughServicePages(t *testing.T) {
	t.Parallel()
	h, _, raw := azureService(t, nil)
	a := h.start("server-a", "")
	pk := h.mustGenerate(a, "x509-CA-A")
	if err := a.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	for i := range 26 {
		name := fmt.Sprintf("a-gone-%02d", i)
		if _, err := raw.CreateKey(callCtx(t), name, azkeys.CreateKeyParameters{Kty: new(azkeys.KeyTypeEC)}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.DeleteKey(callCtx(t), name, nil); err != nil {
			t.Fatal(err)
		}
	}
	b := h.start("server-a", "")
	got, err := b.GetPublicKey(callCtx(t), "x509-CA-A")
	if err != nil || got.Fingerprint != pk.Fingerprint {
		t.Fatalf("after the restart GetPublicKey = %+v, %v; want the key made before (%s)", got, h.record(err), pk.Fingerprint)
	}
}

// TestAzureDisabledKey: a disabled key is still read but no longer signs,
// as on the service. Once someone disables the key the plugin serves,
// SignData fails with FailedPrecondition naming the fix, and a restarted
// plugin refuses the key at Configure the same way.
func TestAzureDisabledKey(t *testing.T) {
	t.Parallel()
	h, srv, raw := azureService(t, nil)
	a := h.start("server-a", "")
	pk := h.mustGenerate(a, "x509-CA-A")
	names := srv.KeyNames(keyvault.DefaultVaultName)
	if len(names) != 1 {
		t.Fatalf("vault holds %v, want one key", names)
	}
	if _, err := raw.UpdateKey(callCtx(t), names[0], "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: new(false)}}, nil); err != nil {
		t.Fatal(err)
	}
	err := h.sign(callCtx(t), a, pk)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("SignData with the disabled key = %v, want FailedPrecondition saying it is disabled", err)
	}
	err = h.configure(h.launch(), "server-a", "")
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "enable it, or delete it") {
		t.Errorf("Configure over the disabled key = %v, want FailedPrecondition naming the fix", err)
	}
}
