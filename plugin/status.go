package plugin

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errNotConfigured answers KeyManager calls that arrive before a successful
// Configure (or after Deinit).
var errNotConfigured = status.Error(codes.FailedPrecondition, "not configured")

// statusf wraps err with a message and gives it a gRPC status: the code err
// already carries (the engine and backends choose codes that keep the cause),
// or fallback when it carries none.
func statusf(err error, fallback codes.Code, format string, args ...any) error {
	code := fallback
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		if c := se.GRPCStatus().Code(); c != codes.Unknown && c != codes.OK {
			code = c
		}
	}
	msg := fmt.Sprintf(format, args...)
	return status.Errorf(code, "%s: %s", msg, status.Convert(err).Message())
}

// passThrough returns an engine error unchanged when it carries a gRPC status
// and as Internal otherwise: an engine error without a code is a bug.
func passThrough(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}
