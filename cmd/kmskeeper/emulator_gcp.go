package main

import (
	"context"
	"errors"
	"io"
)

func runEmulatorGCP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("emulator gcp: not built yet")
}
