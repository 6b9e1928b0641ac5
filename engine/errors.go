package engine

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// codedError is an error with a gRPC code that still unwraps to its cause,
// so that errors.Is/As keep working above the status the plugin returns.
type codedError struct {
	code codes.Code
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// GRPCStatus lets status.FromError and status.Code read the code.
func (e *codedError) GRPCStatus() *status.Status { return status.New(e.code, e.err.Error()) }

// Errorf returns an error carrying code, formatted like fmt.Errorf (so %w
// wraps). Backends use it to say what kind of failure a cloud error is.
func Errorf(code codes.Code, format string, args ...any) error {
	return &codedError{code: code, err: fmt.Errorf(format, args...)}
}

// Code returns the gRPC code an error maps to. Errors that carry no code are
// classified: a context deadline is DeadlineExceeded, a cancellation is
// Canceled, anything else is Internal (a backend that returned it has a bug).
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus().Code()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	}
	return codes.Internal
}

// wrap adds context to err and keeps (or assigns) its code.
func wrap(err error, format string, args ...any) error {
	return &codedError{code: Code(err), err: fmt.Errorf(format+": %w", append(args, err)...)}
}
