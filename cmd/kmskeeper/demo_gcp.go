package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/iterator"

	"github.com/kmskeeper/kmskeeper/emulator/cloudkms"
)

// demoGCPKeyRing is the key ring of the demo's Cloud KMS emulator.
const demoGCPKeyRing = "projects/kmskeeper-demo/locations/global/keyRings/spire"

// startGCPDemo starts the Cloud KMS emulator (plaintext gRPC on loopback,
// no identity checks) with one key ring. The plugin reaches it through the
// endpoint setting; on a loopback endpoint without configured credentials it
// sends none, so the host's own Google credentials never reach the emulator.
// New versions stay PENDING_GENERATION briefly, as on the service.
func startGCPDemo(ctx context.Context, dir string) (*demoTarget, error) {
	srv, err := cloudkms.Start(ctx, cloudkms.Options{KeyRings: []string{demoGCPKeyRing}, PendingGeneration: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	client, err := kms.NewKeyManagementClient(ctx, srv.ClientOptions()...)
	if err != nil {
		srv.Close()
		return nil, err
	}
	idFile := filepath.Join(dir, "server_id")
	return &demoTarget{
		name:       "gcp_kms",
		where:      fmt.Sprintf("Cloud KMS emulator, key ring %s at %s", demoGCPKeyRing, srv.Addr()),
		store:      "key ring",
		retired:    "scheduled for destruction in the key ring",
		pluginData: fmt.Sprintf("key_ring = %q\nendpoint = %q\nkey_identifier_file = %q\n", demoGCPKeyRing, srv.Addr(), idFile),
		env:        []string{"GOOGLE_APPLICATION_CREDENTIALS="},
		keys: func(ctx context.Context) ([]demoKeyRow, error) {
			return listGCPVersions(ctx, client)
		},
		listings: func() int { return srv.Counts()["ListCryptoKeys"] },
		advance:  srv.Clock().Advance,
		snippet: func(pluginPath, checksum string) string {
			return fmt.Sprintf(`    KeyManager "gcp_kms" {
        plugin_cmd      = %q
        plugin_checksum = %q
        plugin_data {
            key_ring            = %q
            endpoint            = %q
            key_identifier_file = %q
        }
    }

The endpoint is plaintext on loopback and needs no credentials.
`, pluginPath, checksum, demoGCPKeyRing, srv.Addr(), idFile)
		},
		close: func() {
			client.Close()
			srv.Close()
		},
	}, nil
}

// listGCPVersions lists every version of the key ring's keys, with their
// key's labels, as the table's rows.
func listGCPVersions(ctx context.Context, client *kms.KeyManagementClient) ([]demoKeyRow, error) {
	var rows []demoKeyRow
	keys := client.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: demoGCPKeyRing})
	for {
		k, err := keys.Next()
		if errors.Is(err, iterator.Done) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing the key ring: %w", err)
		}
		versions := client.ListCryptoKeyVersions(ctx, &kmspb.ListCryptoKeyVersionsRequest{Parent: k.GetName()})
		for {
			v, err := versions.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("listing the versions of %s: %w", k.GetName(), err)
			}
			name := v.GetName()[len(demoGCPKeyRing+"/cryptoKeys/"):]
			state := strings.ToLower(v.GetState().String())
			if v.GetState() == kmspb.CryptoKeyVersion_DESTROY_SCHEDULED {
				state = "retiring" // scheduled for destruction
			}
			rows = append(rows, demoKeyRow{name: name, state: state, tags: k.GetLabels()})
		}
	}
}
