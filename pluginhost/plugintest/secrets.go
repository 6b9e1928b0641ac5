package plugintest

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
)

// minSecretLen is the shortest string the scan looks for: a shorter one
// could appear in a log line by coincidence.
const minSecretLen = 8

// SecretsFromEnv returns what a plugin given env must never log: the value
// of every variable whose name holds SECRET, TOKEN or PASSWORD (not a file
// name), the content of the federated token file, and the private key of a
// Google service account credentials file (each PEM line, and the key's ID).
func SecretsFromEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, value, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		switch {
		case upper == "AZURE_FEDERATED_TOKEN_FILE":
			if b, err := os.ReadFile(value); err == nil {
				out = append(out, strings.TrimSpace(string(b)))
			}
		case upper == "GOOGLE_APPLICATION_CREDENTIALS":
			out = append(out, serviceAccountSecrets(value)...)
		case strings.HasSuffix(upper, "_FILE") || strings.HasSuffix(upper, "_PATH"):
		case strings.Contains(upper, "SECRET") || strings.Contains(upper, "TOKEN") || strings.Contains(upper, "PASSWORD"):
			out = append(out, value)
		}
	}
	return out
}

// serviceAccountSecrets reads a credentials file's private key: the lines
// of its PEM body and its key ID.
func serviceAccountSecrets(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var sa struct {
		PrivateKey   string `json:"private_key"`
		PrivateKeyID string `json:"private_key_id"`
	}
	if json.Unmarshal(b, &sa) != nil {
		return nil
	}
	out := []string{sa.PrivateKeyID}
	if block, _ := pem.Decode([]byte(sa.PrivateKey)); block != nil {
		for _, l := range strings.Split(sa.PrivateKey, "\n") {
			if !strings.HasPrefix(l, "-----") {
				out = append(out, l)
			}
		}
	}
	return out
}

// findSecret describes the first of texts holding one of secrets, or
// returns "". The description names the secret by its length only and
// shows the text with the secret cut out.
func findSecret(texts, secrets []string) string {
	for _, s := range secrets {
		if len(s) < minSecretLen {
			continue
		}
		for _, t := range texts {
			if strings.Contains(t, s) {
				return fmt.Sprintf("secret material (%d characters) appears in the plugin's output: %.300s", len(s), strings.ReplaceAll(t, s, "[secret]"))
			}
		}
	}
	return ""
}
