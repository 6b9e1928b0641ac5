package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmskeeper/kmskeeper/emulator/keyvault"
)

// TestEmulatorAzureHelpDocumentsEveryFlag walks the flag set the command
// parses with, so a flag added later is checked too: each one must appear in
// --help with its usage text and default, and --help must show no flag the
// command does not have.
func TestEmulatorAzureHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	err := runEmulatorAzure(context.Background(), []string{"--help"}, &out, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help error = %v, want flag.ErrHelp", err)
	}
	checkHelpDocumentsFlags(t, out.String(), newEmulatorAzureFlagSet(&azureEmulatorConfig{}, &azureFlagValues{}), 20)
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
		{name: "federated credentials", args: []string{"--federated-credential", "issuer=https://oidc.example/,subject=system:serviceaccount:spire:spire-server", "--federated-credential", "client=app,issuer=https://token.example,subject=repo:x"},
			check: func(t *testing.T, c azureEmulatorConfig) {
				want := []keyvault.FederatedCredential{
					{Issuer: "https://oidc.example/", Subject: "system:serviceaccount:spire:spire-server"},
					{ClientID: "app", Issuer: "https://token.example", Subject: "repo:x"},
				}
				if !slices.Equal(c.opts.FederatedCredentials, want) {
					t.Errorf("federated credentials = %+v, want %+v", c.opts.FederatedCredentials, want)
				}
			}},
		{name: "federated credential without subject", args: []string{"--federated-credential", "issuer=https://oidc.example/"}, wantErr: true},
		{name: "federated credential with an unknown key", args: []string{"--federated-credential", "issuer=https://oidc.example/,subject=s,audience=x"}, wantErr: true},
		{name: "federated credential not key=value", args: []string{"--federated-credential", "https://oidc.example/"}, wantErr: true},
		{name: "service behaviours", args: []string{"--deletion-delay", "12s", "--throttle-retry-after"},
			check: func(t *testing.T, c azureEmulatorConfig) {
				if c.opts.DeletionDelay != 12*time.Second || !c.opts.ThrottleRetryAfter {
					t.Errorf("deletion delay %v, Retry-After %v", c.opts.DeletionDelay, c.opts.ThrottleRetryAfter)
				}
			}},
		{name: "instant deletion", args: []string{"--deletion-delay", "0"},
			check: func(t *testing.T, c azureEmulatorConfig) {
				if c.opts.DeletionDelay >= 0 {
					t.Errorf("deletion delay %v, want instant (negative)", c.opts.DeletionDelay)
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

// TestEmulatorAzureFederatedTokenFile runs the emulator with a federated
// credential for the main app and checks that the env file names the token
// file it wrote, and that the banner shows the trust.
func TestEmulatorAzureFederatedTokenFile(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	dir := t.TempDir()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- runEmulatorAzure(ctx, []string{"--listen", "127.0.0.1:0", "--data-dir", dir,
			"--federated-credential", "issuer=https://oidc.example/,subject=system:serviceaccount:spire:spire-server"}, &out, &bytes.Buffer{})
	}()
	envFile, tokenFile := filepath.Join(dir, "azure.env"), filepath.Join(dir, "federated-token")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(envFile); err == nil && strings.Contains(string(b), "AZURE_FEDERATED_TOKEN_FILE="+tokenFile+"\n") {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the env file never named %s", tokenFile)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tok, err := os.ReadFile(tokenFile); err != nil || strings.Count(string(tok), ".") != 2 {
		t.Errorf("token file: %q, %v; want a JWT", tok, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), "trusts issuer https://oidc.example/ subject system:serviceaccount:spire:spire-server") {
		t.Errorf("banner does not show the federated credential:\n%s", out.String())
	}
}
