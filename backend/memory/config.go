package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/kmskeeper/kmskeeper/config"
	"github.com/kmskeeper/kmskeeper/engine"
)

// Config is the memory backend's plugin_data. It is accepted only by a
// binary built with the kmskeeper_testbackend tag.
type Config struct {
	// Path of the state file, shared by every plugin process given the same
	// path (so HA and crash tests can run several processes).
	Path string `hcl:"memory_backend"`
	// CreateDelay makes every key creation take this long (a Go duration),
	// like an HSM creating an RSA key.
	CreateDelay string `hcl:"memory_create_delay"`
}

// Kind returns the memory backend's configuration kind, selected by the
// memory_backend key.
func Kind() config.Kind {
	return config.Kind{Name: "memory (test only)", Selector: "memory_backend", New: func() config.Backend { return &Config{} }}
}

// Check implements config.Backend.
func (c *Config) Check(string) error {
	if c.Path == "" {
		return fmt.Errorf("memory_backend must name the state file")
	}
	if c.CreateDelay != "" {
		if _, err := time.ParseDuration(c.CreateDelay); err != nil {
			return fmt.Errorf("memory_create_delay %q is not a duration such as \"2s\": %w", c.CreateDelay, err)
		}
	}
	return nil
}

// Fixed implements config.Backend.
func (c *Config) Fixed() string { return "memory_backend=" + c.Path }

// Open implements config.Backend.
func (c *Config) Open(_ context.Context, p config.OpenParams) (engine.Backend, error) {
	s, err := OpenStore(c.Path)
	if err != nil {
		return nil, err
	}
	if c.CreateDelay != "" {
		d, _ := time.ParseDuration(c.CreateDelay)
		s.Hook = func(ctx context.Context, op, _ string) error {
			if op != "Create" {
				return nil
			}
			select {
			case <-time.After(d):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return s.Backend(p.TrustDomain, p.ServerID), nil
}
