package cloudkms

import (
	"context"
	"net/http"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// TestDateHeader checks that every unary answer, a failure included,
// carries the emulator clock's time in a "date" header, as Google's front
// ends send the service's time, and that it follows the clock when it is
// advanced.
func TestDateHeader(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC))
	s, c := startTest(t, Options{Clock: clock})
	createKey(t, c, "k", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256, nil)
	calls := []struct {
		name string
		call func(context.Context, ...gax.CallOption) error
	}{
		{"ListCryptoKeys", func(ctx context.Context, opts ...gax.CallOption) error {
			_, err := c.ListCryptoKeys(ctx, &kmspb.ListCryptoKeysRequest{Parent: testRing}, opts...).Next()
			return err
		}},
		{"GetCryptoKey", func(ctx context.Context, opts ...gax.CallOption) error {
			_, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: testRing + "/cryptoKeys/k"}, opts...)
			return err
		}},
		{"GetCryptoKey of a missing key", func(ctx context.Context, opts ...gax.CallOption) error {
			_, err := c.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: testRing + "/cryptoKeys/missing"}, opts...)
			if err == nil {
				t.Error("GetCryptoKey of a missing key succeeded")
			}
			return nil
		}},
	}
	for _, advance := range []time.Duration{0, 48 * time.Hour} {
		s.Clock().Advance(advance)
		want := s.Clock().Now().UTC().Format(http.TimeFormat)
		for _, tt := range calls {
			var md metadata.MD
			if err := tt.call(context.Background(), gax.WithGRPCOptions(grpc.Header(&md))); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if got := md.Get("date"); len(got) != 1 || got[0] != want {
				t.Errorf("%s after %v: date = %q, want %q", tt.name, advance, got, want)
			}
		}
	}
}
