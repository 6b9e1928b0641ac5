package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatusf(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		fallback codes.Code
		want     codes.Code
	}{
		{"plain error takes fallback", errors.New("boom"), codes.InvalidArgument, codes.InvalidArgument},
		{"status kept", status.Error(codes.PermissionDenied, "no keys/create"), codes.InvalidArgument, codes.PermissionDenied},
		{"wrapped status kept", fmt.Errorf("open: %w", status.Error(codes.Unavailable, "dial")), codes.InvalidArgument, codes.Unavailable},
		{"unknown status takes fallback", status.Error(codes.Unknown, "?"), codes.FailedPrecondition, codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := statusf(tt.err, tt.fallback, "doing %s", "it")
			if status.Code(got) != tt.want {
				t.Errorf("code = %v, want %v (%v)", status.Code(got), tt.want, got)
			}
			if msg := status.Convert(got).Message(); !strings.HasPrefix(msg, "doing it: ") {
				t.Errorf("message %q does not start with the context", msg)
			}
		})
	}
}

func TestPassThrough(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"nil", nil, codes.OK},
		{"status", status.Error(codes.NotFound, "no key x509-CA-A"), codes.NotFound},
		{"wrapped status", fmt.Errorf("sign x509-CA-A: %w", status.Error(codes.ResourceExhausted, "throttled")), codes.ResourceExhausted},
		{"deadline", fmt.Errorf("sign: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"canceled", context.Canceled, codes.Canceled},
		{"plain is a bug", errors.New("nil map"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(passThrough(tt.err)); got != tt.want {
				t.Errorf("passThrough(%v) code = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
