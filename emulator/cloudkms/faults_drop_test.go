package cloudkms

import (
	"context"
	"crypto"
	"strings"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFaultDrop injects a dropped connection: the call fails on the client
// with UNAVAILABLE from its own transport (the emulator's answer never
// arrives), the request log marks it injected, and the next call reconnects
// and succeeds; the SDK's retry of an idempotent call absorbs a single drop.
func TestFaultDrop(t *testing.T) {
	s, c := startTest(t, Options{})
	ctx := context.Background()
	key := createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	v1 := key.GetName() + "/cryptoKeyVersions/1"
	sign := func() error {
		_, err := c.AsymmetricSign(ctx, &kmspb.AsymmetricSignRequest{Name: v1, Digest: digestFor(crypto.SHA256, []byte("x"))}, noRetry)
		return err
	}

	s.InjectFault(Fault{Method: "AsymmetricSign", Drop: true, Times: 1})
	err := sign()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("sign over a dropped connection = %v, want UNAVAILABLE", err)
	}
	if strings.Contains(err.Error(), "injected") {
		t.Errorf("the client saw the emulator's answer %q; the connection should have broken first", err)
	}
	if err := sign(); err != nil {
		t.Fatalf("sign after the drop: %v", err)
	}
	var injected int
	for _, r := range s.Requests() {
		if r.Method == "AsymmetricSign" && r.Injected {
			injected++
		}
	}
	if injected != 1 {
		t.Errorf("%d AsymmetricSign requests logged as injected, want 1", injected)
	}

	// The SDK retries GetCryptoKey on UNAVAILABLE: one drop costs a retry.
	s.InjectFault(Fault{Method: "GetCryptoKey", Drop: true, Times: 1})
	if _, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: key.GetName()}); err != nil {
		t.Errorf("GetCryptoKey with the SDK's retry over one dropped connection: %v", err)
	}
	if n := s.Counts()["GetCryptoKey"]; n != 2 {
		t.Errorf("GetCryptoKey reached the emulator %d times, want 2 (the dropped one and the retry)", n)
	}
}
