package azurekv_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/kmskeeper/kmskeeper/backend/azurekv"
	"github.com/kmskeeper/kmskeeper/conformance"
	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
	"github.com/kmskeeper/kmskeeper/engine"
)

// BenchmarkSignData is the regression guard of the signing path over Key
// Vault, in process against the emulator: engine.Manager.SignData over the
// backend the plugin opens from plugin_data ("engine"), beside the same
// signature made with azkeys directly ("sdk"). Both pay the emulator's
// work in this process, so the difference between the two rows, in ns/op
// and allocs/op, is what kmskeeper adds to a signature (without the SPIRE
// plugin boundary, which plugin.BenchmarkSignDataGRPC covers):
//
//	go test -run '^$' -bench SignData -benchmem ./backend/azurekv
func BenchmarkSignData(b *testing.B) {
	ctx := context.Background()
	srv, err := keyvault.Start(ctx, keyvault.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	if _, _, err := srv.WriteFiles(b.TempDir()); err != nil {
		b.Fatal(err)
	}
	// The backend reads the environment the plugin process gets: the
	// emulator's CA (SSL_CERT_FILE) and authority host.
	vault := srv.VaultURL(keyvault.DefaultVaultName)
	hcl := fmt.Sprintf("key_vault_uri = %q\ntenant_id = %q\napp_id = %q\napp_secret = %q\nkey_identifier_value = \"bench\"\n",
		vault, srv.TenantID(), srv.ClientID(), srv.ClientSecret())
	m := conformance.Manager(b, hcl, azurekv.Kind(), srv.Env())
	client, err := srv.KeysClient(vault)
	if err != nil {
		b.Fatal(err)
	}
	d := sha256.Sum256([]byte("bench"))
	for _, tc := range []struct {
		t      engine.KeyType
		params azkeys.CreateKeyParameters
		alg    azkeys.SignatureAlgorithm
	}{
		{engine.ECP256, azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeEC), Curve: ptr(azkeys.CurveNameP256)}, azkeys.SignatureAlgorithmES256},
		{engine.RSA2048, azkeys.CreateKeyParameters{Kty: ptr(azkeys.KeyTypeRSA), KeySize: ptr(int32(2048))}, azkeys.SignatureAlgorithmRS256},
	} {
		id := "x509-CA-" + tc.t.String()
		if _, err := m.GenerateKey(ctx, id, tc.t); err != nil {
			b.Fatal(err)
		}
		name := "sdk-" + strings.ReplaceAll(tc.t.String(), "_", "-")
		resp, err := client.CreateKey(ctx, name, tc.params, nil)
		if err != nil {
			b.Fatal(err)
		}
		version := resp.Key.KID.Version()
		b.Run(tc.t.String()+"/engine", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := m.SignData(ctx, id, d[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.t.String()+"/sdk", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Sign(ctx, name, version, azkeys.SignParameters{Algorithm: &tc.alg, Value: d[:]}, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
