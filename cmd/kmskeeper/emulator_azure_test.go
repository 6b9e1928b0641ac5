package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestEmulatorAzureHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	err := runEmulatorAzure(context.Background(), []string{"--help"}, &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help error = %v, want flag.ErrHelp", err)
	}
	for _, f := range []string{"-listen", "-vault", "-managed-hsm", "-hostname", "-data-dir", "-ca-file", "-env-file", "-role", "-client", "-tenant-id", "-client-id", "-client-secret", "-msi-listen", "-retention-days", "-purge-protection", "-throttling", "-log-requests", "-key-identifier", "-managed-identity-client-id"} {
		if !strings.Contains(out.String(), "  "+f) {
			t.Errorf("--help does not document %s", f)
		}
	}
}

func TestEmulatorAzureFlagParsing(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, c azureEmulatorConfig)
	}{
		{name: "defaults", check: func(t *testing.T, c azureEmulatorConfig) {
			if c.opts.Listen != "127.0.0.1:8443" || len(c.opts.Vaults) != 0 {
				t.Errorf("defaults: %+v", c.opts)
			}
		}},
		{name: "vaults and roles", args: []string{"--vault", "one:standard", "--vault", "two@127.0.0.1:9443", "--managed-hsm", "hsm1", "--role", "app=keys/get,keys/sign", "--client", "app=s3cret", "--retention-days", "7"},
			check: func(t *testing.T, c azureEmulatorConfig) {
				v := c.opts.Vaults
				if len(v) != 2 || v[0].Name != "one" || v[0].SKU != "standard" || v[1].Name != "two" || v[1].Listen != "127.0.0.1:9443" || v[0].RetentionDays != 7 {
					t.Errorf("vaults = %+v", v)
				}
				if got := c.opts.Roles["app"]; len(got) != 2 || got[1] != "keys/sign" {
					t.Errorf("roles = %v", c.opts.Roles)
				}
				if c.opts.ExtraClients["app"] != "s3cret" || c.opts.ManagedHSMs[0] != "hsm1" {
					t.Errorf("clients/hsms = %v %v", c.opts.ExtraClients, c.opts.ManagedHSMs)
				}
			}},
		{name: "bad role", args: []string{"--role", "nope"}, wantErr: true},
		{name: "bad client", args: []string{"--client", "x="}, wantErr: true},
		{name: "stray argument", args: []string{"extra"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseAzureEmulatorFlags(tt.args, &bytes.Buffer{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestEmulatorAzureRunsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	dir := t.TempDir()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runEmulatorAzure(ctx, []string{"--listen", "127.0.0.1:0", "--data-dir", dir}, &out, &bytes.Buffer{})
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("emulator did not stop after cancel")
	}
	if !strings.Contains(out.String(), "key_vault_uri") {
		t.Errorf("banner lacks the plugin_data snippet:\n%s", out.String())
	}
}
