package main

import (
	"context"
	"errors"
	"io"
)

func runEmulatorAzure(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("emulator azure: not built yet")
}
