// Package config decodes and checks kmskeeper's plugin_data: the HCL v1 text
// SPIRE passes to Configure and Validate, and that the operator commands read
// from a server.conf. The plugin and the CLI share it so that both apply
// exactly the same checks.
package config

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/kmskeeper/kmskeeper/engine"
)

// Common holds the settings every backend shares.
type Common struct {
	KeyIdentifierFile      string `hcl:"key_identifier_file"`
	KeyIdentifierValue     string `hcl:"key_identifier_value"`
	KeyMetadataFile        string `hcl:"key_metadata_file"` // deprecated alias of KeyIdentifierFile
	MaxKeyCreationsPerHour int    `hcl:"max_key_creations_per_hour"`
	// LivenessInterval and CleanupInterval are Go durations ("6h"); empty
	// means the engine's defaults.
	LivenessInterval string `hcl:"liveness_interval"`
	CleanupInterval  string `hcl:"cleanup_interval"`

	schedule engine.Schedule
}

// Live returns the settings a runtime re-Configure may change.
func (c *Config) Live() engine.Live {
	return engine.Live{MaxCreationsPerHour: c.Common.MaxKeyCreationsPerHour, Schedule: c.Common.schedule}
}

// Backend is one cloud's configuration, decoded from the same HCL text by its
// own struct's hcl tags.
type Backend interface {
	// Check runs every static check of the configuration: nothing is
	// written and no network call is made.
	Check(trustDomain string) error
	// Fixed describes what cannot change at runtime (where the keys live and
	// who the plugin is to the cloud); a re-Configure that changes it is
	// refused.
	Fixed() string
	// Open builds the backend. It may call the cloud (to obtain
	// credentials), but does not list or create keys.
	Open(ctx context.Context, p OpenParams) (engine.Backend, error)
}

// ServerIDChecker is implemented by backend configurations whose cloud
// restricts the server ID further than config does: every server ID must
// come back exactly as written from the tags or labels a listing reads (Key
// Vault: the spire-server-id tag; Cloud KMS: key names and label values).
// Config consumes it so that Validate refuses what Open would, or what would
// orphan the keys: Parse checks key_identifier_value, a fixed ID known from
// the text alone; ServerID checks an ID read from key_identifier_file once the
// file exists. A file that does not exist yet is not checked, because the ID
// Configure will write into it is a new UUID, which every backend accepts.
// Config's own rule for every server ID (valid UTF-8, no control characters,
// no white space at either end) applies after the backend's.
type ServerIDChecker interface {
	// CheckServerID returns an error saying why serverID cannot be used
	// and what would fit; it makes no network call.
	CheckServerID(serverID string) error
}

// Warner is implemented by backend configurations that accept deprecated
// keys: Parse adds the notes to Config.Warnings, so that Configure logs them
// and Validate reports them, like the common deprecated keys.
type Warner interface {
	Warnings() []string
}

// OpenParams carries what a backend needs besides its own configuration.
type OpenParams struct {
	TrustDomain string
	ServerID    string
	Logger      hclog.Logger
	// Metrics receives the backend's own measurements (throttled retries).
	Metrics engine.Metrics
}

// Kind describes a backend kind the configuration can select.
type Kind struct {
	// Name is the backend's name in messages ("azure_key_vault").
	Name string
	// Selector is the configuration key whose presence selects this kind.
	Selector string
	// New returns a pointer to a zero configuration struct with hcl tags.
	New func() Backend
}

// Config is a decoded and checked plugin_data.
type Config struct {
	Common  Common
	Kind    Kind
	Backend Backend
	// Predecessor is the migrate_from block, if any.
	Predecessor *Predecessor
	// Warnings are notes for the operator (deprecated keys) that do not stop
	// the plugin.
	Warnings []string
}
