package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"runtime"
	"strings"
	"testing"
)

// TestHelp checks that every command answers --help with its usage and
// exits 0, and that the top-level help lists every command.
func TestHelp(t *testing.T) {
	var top bytes.Buffer
	if err := runCLI(context.Background(), []string{"--help"}, &top, &top); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"version", "--help"}, []string{"Usage: kmskeeper version"}},
		{[]string{"install", "--help"}, []string{"Usage: kmskeeper install", "plugin_checksum"}},
		{[]string{"validate", "--help"}, []string{"Usage: kmskeeper validate", "-probe", "-config", "-trust-domain", "-json", "-plugin", "Exits 0 only", "Every configuration problem"}},
		{[]string{"keys", "list", "--help"}, []string{"Usage: kmskeeper keys list", "-config", "States:", "-json"}},
		{[]string{"gc", "--help"}, []string{"Usage: kmskeeper gc", "-apply", "-dry-run", "-config"}},
		{[]string{"emulator", "--help"}, []string{"azure", "gcp"}},
		{[]string{"emulator", "azure", "--help"}, []string{"-listen"}},
		{[]string{"emulator", "gcp", "--help"}, []string{"-listen"}},
		{[]string{"demo", "--help"}, []string{"-keep"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if !strings.Contains(top.String(), "  "+tt.args[0]+" ") {
				t.Errorf("top-level help does not list %s:\n%s", tt.args[0], top.String())
			}
			var out bytes.Buffer
			err := runCLI(context.Background(), tt.args, &out, &out)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("error = %v, want flag.ErrHelp (exit 0)", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("help does not mention %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	err := runCLI(context.Background(), []string{"frobnicate"}, &out, &out)
	var ue usageError
	if !errors.As(err, &ue) || exitCode(err) != 2 || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("error = %v", err)
	}
}

func TestOperatorNeedsConfig(t *testing.T) {
	for _, args := range [][]string{{"validate"}, {"keys", "list"}, {"gc"}} {
		var out bytes.Buffer
		err := runCLI(context.Background(), args, &out, &out)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "--config is required") {
			t.Errorf("%v: error = %v", args, err)
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := runCLI(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatalf("version: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "kmskeeper ") || !strings.HasPrefix(lines[1], "commit: ") ||
		!strings.HasPrefix(lines[2], "date: ") ||
		!strings.HasPrefix(lines[3], "go: "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("version printed:\n%s", out.String())
	}
}
