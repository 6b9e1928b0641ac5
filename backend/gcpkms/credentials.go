package gcpkms

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"

	"cloud.google.com/go/compute/metadata"
	"google.golang.org/api/option"
)

// credentials is who the plugin is to Cloud KMS.
type credentials struct {
	// options authenticate the client.
	options []option.ClientOption
	// describe says where the credentials come from (never their content).
	describe string
	// email is the service account, for the default key policy, when the
	// credentials name one; lookup finds it otherwise (the metadata server).
	email  string
	lookup func(ctx context.Context) (string, error)
}

// credentialFile is what the plugin reads of a credentials JSON file: its
// type and the service account it acts as. The private key is never read
// into anything that is logged.
type credentialFile struct {
	Type             string `json:"type"`
	ClientEmail      string `json:"client_email"`
	ImpersonationURL string `json:"service_account_impersonation_url"`
}

// credentialTypes are the credential file types the client accepts.
var credentialTypes = map[string]option.CredentialsType{
	"service_account":              option.ServiceAccount,
	"authorized_user":              option.AuthorizedUser,
	"impersonated_service_account": option.ImpersonatedServiceAccount,
	"external_account":             option.ExternalAccount,
}

// parseCredentialFile reads the type and service account of a credentials
// file. Error messages name the file and the problem, never the content.
func parseCredentialFile(path string, data []byte) (credentialFile, error) {
	var f credentialFile
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("service_account_file %s is not a JSON credentials file (a service account key downloaded from IAM, or a workload identity federation configuration)", path)
	}
	if _, ok := credentialTypes[f.Type]; !ok {
		return f, fmt.Errorf("service_account_file %s has credential type %q; want service_account, external_account, impersonated_service_account or authorized_user", path, f.Type)
	}
	return f, nil
}

// serviceAccount returns the service account email a credentials file acts
// as, or "" if it names none (user credentials).
func (f credentialFile) serviceAccount() string {
	if f.ClientEmail != "" && f.Type == "service_account" {
		return f.ClientEmail
	}
	// .../serviceAccounts/<email>:generateAccessToken
	if _, rest, ok := strings.Cut(f.ImpersonationURL, "/serviceAccounts/"); ok {
		email, _, _ := strings.Cut(rest, ":")
		return email
	}
	return ""
}

// loadCredentials decides how the client authenticates:
//   - service_account_file: that file;
//   - otherwise, for a loopback endpoint with GOOGLE_APPLICATION_CREDENTIALS
//     unset: no credentials (a local emulator; the machine's own Google
//     credentials are not sent to it);
//   - otherwise Application Default Credentials, whose service account email
//     is read from GOOGLE_APPLICATION_CREDENTIALS or, on Google Cloud, asked
//     of the metadata server when a key is first created.
func loadCredentials(serviceAccountFile string, ep endpoint, getenv func(string) string) (credentials, error) {
	if serviceAccountFile != "" {
		data, err := os.ReadFile(serviceAccountFile)
		if err != nil {
			return credentials{}, fmt.Errorf("service_account_file %s cannot be read: %w", serviceAccountFile, err)
		}
		f, err := parseCredentialFile(serviceAccountFile, data)
		if err != nil {
			return credentials{}, err
		}
		return credentials{
			options:  []option.ClientOption{option.WithAuthCredentialsJSON(credentialTypes[f.Type], data)},
			describe: "service_account_file " + serviceAccountFile,
			email:    f.serviceAccount(),
		}, nil
	}
	adcFile := getenv("GOOGLE_APPLICATION_CREDENTIALS")
	if adcFile == "" && ep.loopback {
		return credentials{options: []option.ClientOption{option.WithoutAuthentication()}, describe: "none (loopback endpoint)"}, nil
	}
	c := credentials{describe: "Application Default Credentials"}
	if adcFile != "" {
		c.describe += " (GOOGLE_APPLICATION_CREDENTIALS)"
		if data, err := os.ReadFile(adcFile); err == nil {
			if f, err := parseCredentialFile(adcFile, data); err == nil {
				c.email = f.serviceAccount()
			}
		}
		return c, nil
	}
	c.lookup = metadataEmail()
	return c, nil
}

// metadataEmail returns a lookup of the default service account's email on
// the metadata server, made at most once and only on Google Cloud.
func metadataEmail() func(ctx context.Context) (string, error) {
	var once sync.Once
	var email string
	var err error
	return func(ctx context.Context) (string, error) {
		once.Do(func() {
			if !metadata.OnGCEWithContext(ctx) {
				err = fmt.Errorf("not running on Google Cloud, and the credentials name no service account")
				return
			}
			email, err = metadata.EmailWithContext(ctx, "default")
		})
		return email, err
	}
}
