package gcpkms_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/kmskeeper/kmskeeper/backend/gcpkms"
	"github.com/kmskeeper/kmskeeper/conformance"
	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
	"github.com/kmskeeper/kmskeeper/engine"
)

// BenchmarkSignData is the regression guard of the signing path over Cloud
// KMS, in process against the emulator: engine.Manager.SignData over the
// backend the plugin opens from plugin_data ("engine"), beside the same
// AsymmetricSign made with the Cloud KMS client directly ("sdk"). Both pay
// the emulator's work in this process, so the difference between the two
// rows, in ns/op and allocs/op, is what kmskeeper adds to a signature
// (without the SPIRE plugin boundary, which plugin.BenchmarkSignDataGRPC
// covers):
//
//	go test -run '^$' -bench SignData -benchmem ./backend/gcpkms
func BenchmarkSignData(b *testing.B) {
	const ring = "projects/bench/locations/global/keyRings/spire"
	ctx := context.Background()
	srv, err := cloudkms.Start(ctx, cloudkms.Options{KeyRings: []string{ring}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	hcl := fmt.Sprintf("key_ring = %q\nendpoint = %q\nkey_identifier_value = \"bench\"\n", ring, srv.Addr())
	m := conformance.Manager(b, hcl, gcpkms.Kind(), srv.Env())
	client, err := kms.NewKeyManagementClient(ctx, srv.ClientOptions()...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	d := sha256.Sum256([]byte("bench"))
	for _, tc := range []struct {
		t   engine.KeyType
		alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	}{
		{engine.ECP256, kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256},
		{engine.RSA2048, kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256},
	} {
		id := "x509-CA-" + tc.t.String()
		if _, err := m.GenerateKey(ctx, id, tc.t); err != nil {
			b.Fatal(err)
		}
		key, err := client.CreateCryptoKey(ctx, &kmspb.CreateCryptoKeyRequest{
			Parent:      ring,
			CryptoKeyId: "sdk-" + strings.ReplaceAll(tc.t.String(), "_", "-"),
			CryptoKey: &kmspb.CryptoKey{
				Purpose:         kmspb.CryptoKey_ASYMMETRIC_SIGN,
				VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: tc.alg},
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		version := key.GetName() + "/cryptoKeyVersions/1"
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
				if _, err := client.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{
					Name:   version,
					Digest: &kmspb.Digest{Digest: &kmspb.Digest_Sha256{Sha256: d[:]}},
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
