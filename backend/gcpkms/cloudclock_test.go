package gcpkms

import (
	"testing"
	"time"

	emu "github.com/kmskeeper/kmskeeper/emulator/gcpkms"
	"github.com/kmskeeper/kmskeeper/keymanager"
)

// TestOpenedBackendStampsFollowTheCloudClock opens the backend the way the plugin does
// (Config.Open, local clock) against an emulator whose clock runs a day
// ahead, and checks that the liveness stamp it writes is the cloud's time:
// not the local time (other servers would take the key for a day old) and
// not the cloud's lead counted twice (the key would look fresh for a day too
// long, and the engine would never find it due).
func TestOpenedBackendStampsFollowTheCloudClock(t *testing.T) {
	for _, lead := range []time.Duration{0, 25 * time.Hour, 30 * 24 * time.Hour} {
		t.Run(lead.String(), func(t *testing.T) {
			srv, _ := startEmulator(t, emu.Options{Principals: map[string][]string{pluginAccount: ringPermissions, "admin@kmskeeper-test.iam.gserviceaccount.com": {"*"}}})
			b := openWithServiceAccount(t, srv, "")
			srv.Clock().Advance(lead)
			// The first creation shows the backend the cloud's time.
			if _, err := b.Create(callCtx(t), "JWT-Signer-A", keymanager.ECP256, testLease()); err != nil {
				t.Fatalf("Create: %v", err)
			}
			g, err := b.Create(callCtx(t), "x509-CA-A", keymanager.ECP256, testLease())
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := b.KeepAlive(callCtx(t), g); err != nil {
				t.Fatalf("KeepAlive: %v", err)
			}
			label := getKey(t, adminClient(t, srv), testRing+"/cryptoKeys/spire-key-server-a-x509-CA-A").GetLabels()[labelLastUpdate]
			stamp, ok := parseUnixLabel(label)
			if !ok {
				t.Fatalf("spire-last-update = %q", label)
			}
			if d := stamp.Sub(srv.Clock().Now()); d < -time.Minute || d > time.Minute {
				t.Errorf("spire-last-update is %v from the cloud's time (lead %v)", d.Round(time.Second), lead)
			}
		})
	}
}
