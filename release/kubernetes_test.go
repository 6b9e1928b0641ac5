package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestKubernetesValues reads the Helm values blocks of docs/kubernetes.md
// (the spiffe/helm-charts-hardened chart cannot be fetched here to render
// them, so the test checks what the chart's templates do with them) and
// checks that each block is YAML a user can paste and fits together: the
// chart's disk key manager off and kmskeeper the one key manager it counts,
// an init container that installs the binary into the volume the server
// container mounts at plugin_cmd's directory, key_identifier_file on the
// chart's persistent volume, the cloud's workload identity, and plugin_data
// that kmskeeper validate --offline accepts in the JSON form the chart
// renders into server.conf.
func TestKubernetesValues(t *testing.T) {
	doc, err := os.ReadFile("../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)<!-- kubernetes-values: (\\w+) -->\n```yaml\n(.*?)```").FindAllSubmatch(doc, -1)
	tests := map[string]struct {
		backendKey string            // the plugin_data key selecting the cloud
		annotation string            // the service account annotation of the workload identity
		podLabels  map[string]string // labels the workload identity needs on the pod
	}{
		"azure": {backendKey: "key_vault_uri", annotation: "azure.workload.identity/client-id", podLabels: map[string]string{"azure.workload.identity/use": "true"}},
		"gcp":   {backendKey: "key_ring", annotation: "iam.gke.io/gcp-service-account"},
	}
	if len(blocks) != len(tests) {
		t.Fatalf("docs/kubernetes.md has %d values blocks, want %d (one per cloud)", len(blocks), len(tests))
	}
	kmskeeper := buildForHost(t)
	for _, b := range blocks {
		cloud := string(b[1])
		want, ok := tests[cloud]
		if !ok {
			t.Errorf("values block for unknown cloud %q", cloud)
			continue
		}
		t.Run(cloud, func(t *testing.T) {
			var v values
			if err := yaml.UnmarshalStrict(b[2], &v); err != nil {
				t.Fatalf("the values do not parse as YAML: %v", err)
			}
			s := v.Server
			if s.KeyManager.Disk.Enabled == nil || *s.KeyManager.Disk.Enabled {
				t.Error("keyManager.disk.enabled is not false: the chart would render two key managers")
			}
			if len(s.Unsupported.KeyManager) != 1 {
				t.Fatalf("unsupportedBuiltInPlugins.keyManager has %d entries, want kmskeeper's alone", len(s.Unsupported.KeyManager))
			}
			var km plugin
			for _, p := range s.Unsupported.KeyManager {
				km = p
			}
			if km.Cmd == "" || km.Checksum == "" || len(km.Data) == 0 {
				t.Fatalf("the KeyManager block lacks plugin_cmd, plugin_checksum or plugin_data: %+v", km)
			}
			if !regexp.MustCompile(`^([0-9a-f]{64}|REPLACE-WITH-SHA256-OF-kmskeeper-linux-(amd64|arm64))$`).MatchString(km.Checksum) {
				t.Errorf("plugin_checksum %q is neither a SHA-256 nor the documented placeholder", km.Checksum)
			}
			if arch := s.NodeSelector["kubernetes.io/arch"]; !strings.HasSuffix(km.Checksum, arch) && len(km.Checksum) != 64 {
				t.Errorf("plugin_checksum %q is not for the pinned architecture %q", km.Checksum, arch)
			}

			// The init container installs into the volume the server
			// container mounts where plugin_cmd points.
			dir := path.Dir(km.Cmd)
			if path.Base(km.Cmd) != "kmskeeper" {
				t.Errorf("plugin_cmd %s: install writes kmskeeper into the directory it is given", km.Cmd)
			}
			var vol string
			for _, m := range s.ExtraVolumeMounts {
				if m.MountPath == dir {
					vol = m.Name
				}
			}
			if vol == "" {
				t.Fatalf("no extraVolumeMounts entry mounts %s, the directory of plugin_cmd", dir)
			}
			if !slices.ContainsFunc(s.ExtraVolumes, func(x volume) bool { return x.Name == vol && x.EmptyDir != nil }) {
				t.Errorf("extraVolumes has no emptyDir named %s", vol)
			}
			installs := false
			for _, c := range s.InitContainers {
				for _, m := range c.VolumeMounts {
					if m.Name == vol && slices.Equal(c.Args, []string{"install", m.MountPath}) && c.Image != "" {
						installs = true
					}
				}
			}
			if !installs {
				t.Errorf("no init container runs `install <mount>` with volume %s mounted there: %+v", vol, s.InitContainers)
			}

			// The identifier is on the chart's persistent volume.
			idFile, _ := km.Data["key_identifier_file"].(string)
			if !strings.HasPrefix(idFile, "/run/spire/data/") || s.Persistence.Type != "pvc" {
				t.Errorf("key_identifier_file %q is not on the chart's persistent volume /run/spire/data (persistence.type %q)", idFile, s.Persistence.Type)
			}
			if _, ok := km.Data["key_identifier_value"]; ok {
				t.Error("key_identifier_value would give every replica the same server ID")
			}

			// The workload identity.
			if s.ServiceAccount.Annotations[want.annotation] == "" {
				t.Errorf("the service account lacks the annotation %s", want.annotation)
			}
			for k, val := range want.podLabels {
				if s.PodLabels[k] != val {
					t.Errorf("podLabels[%s] = %q, want %q", k, s.PodLabels[k], val)
				}
			}
			if _, ok := km.Data[want.backendKey]; !ok {
				t.Errorf("plugin_data has no %s", want.backendKey)
			}

			// kmskeeper accepts the plugin_data as the chart renders it.
			if v.Global.Spire.TrustDomain == "" {
				t.Fatal("global.spire.trustDomain is not set")
			}
			data, err := json.Marshal(km.Data)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "plugin_data.json")
			if err := os.WriteFile(file, data, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.CommandContext(t.Context(), kmskeeper, "validate", "--offline", "--json", "--config", file, "--trust-domain", v.Global.Spire.TrustDomain).CombinedOutput()
			if err != nil {
				t.Errorf("kmskeeper validate --offline refuses the plugin_data %s: %v\n%s", data, err, out)
			}
		})
	}
}

// values is the part of the spire chart's values the documented blocks set.
type values struct {
	Global struct {
		Spire struct {
			ClusterName string `json:"clusterName"`
			TrustDomain string `json:"trustDomain"`
		} `json:"spire"`
	} `json:"global"`
	Server struct {
		CAKeyType      string `json:"caKeyType"`
		ServiceAccount struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"serviceAccount"`
		PodLabels    map[string]string `json:"podLabels"`
		NodeSelector map[string]string `json:"nodeSelector"`
		Persistence  struct {
			Type string `json:"type"`
		} `json:"persistence"`
		KeyManager struct {
			Disk struct {
				Enabled *bool `json:"enabled"`
			} `json:"disk"`
		} `json:"keyManager"`
		Unsupported struct {
			KeyManager map[string]plugin `json:"keyManager"`
		} `json:"unsupportedBuiltInPlugins"`
		InitContainers    []container   `json:"initContainers"`
		ExtraVolumes      []volume      `json:"extraVolumes"`
		ExtraVolumeMounts []volumeMount `json:"extraVolumeMounts"`
	} `json:"spire-server"`
}

type plugin struct {
	Cmd      string         `json:"plugin_cmd"`
	Checksum string         `json:"plugin_checksum"`
	Data     map[string]any `json:"plugin_data"`
}

type container struct {
	Name            string         `json:"name"`
	Image           string         `json:"image"`
	Args            []string       `json:"args"`
	SecurityContext map[string]any `json:"securityContext"`
	VolumeMounts    []volumeMount  `json:"volumeMounts"`
}

type volume struct {
	Name     string          `json:"name"`
	EmptyDir *map[string]any `json:"emptyDir"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	ReadOnly  bool   `json:"readOnly"`
}

// buildForHost builds kmskeeper for this machine with the release's flags
// (so it reuses the release test's compiled packages).
func buildForHost(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kmskeeper")
	s := Stamp{Version: "docs-test", Commit: strings.Repeat("0", 40), Date: time.Unix(0, 0).UTC()}
	if err := BuildBinary(t.Context(), "..", Target{runtime.GOOS, runtime.GOARCH}, s, out); err != nil {
		t.Fatal(err)
	}
	return out
}
