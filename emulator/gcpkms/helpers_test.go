package gcpkms

import (
	"context"
	"testing"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
)

const testRing = "projects/p/locations/global/keyRings/r"

// startTest starts an emulator with a manual clock and returns it and a
// client built from its ClientOptions.
func startTest(t *testing.T, opts Options) (*Server, *kms.KeyManagementClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if opts.Clock == nil {
		opts.Clock = NewManualClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	}
	if opts.KeyRings == nil {
		opts.KeyRings = []string{testRing}
	}
	opts.Logf = t.Logf
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := kms.NewKeyManagementClient(ctx, s.ClientOptions()...)
	if err != nil {
		t.Fatalf("NewKeyManagementClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}
