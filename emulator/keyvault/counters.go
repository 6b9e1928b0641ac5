package keyvault

import (
	"maps"
	"sync"
)

// counters counts requests per vault and operation, so tests and benchmarks
// can assert how many cloud calls a code path makes.
type counters struct {
	mu sync.Mutex
	m  map[string]map[string]int // vault -> operation -> count
}

func (c *counters) add(vault, op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]map[string]int{}
	}
	if c.m[vault] == nil {
		c.m[vault] = map[string]int{}
	}
	c.m[vault][op]++
}

// total sums the counts of all vaults per operation.
func (c *counters) total() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, ops := range c.m {
		for op, n := range ops {
			out[op] += n
		}
	}
	return out
}

func (c *counters) vault(name string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	maps.Copy(out, c.m[name])
	return out
}

func (c *counters) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

// Counts returns the number of requests per operation name (CreateKey, Sign,
// GetKey, ...) over all vaults since start or the last ResetCounts. Data-plane
// operations are counted once authenticated (whether or not a fault or
// throttling then answered them); "Challenge" counts anonymous requests
// answered with 401, and "Token"/"ManagedIdentityToken" count token requests.
func (s *Server) Counts() map[string]int { return s.counts.total() }

// VaultCounts returns Counts for one vault or Managed HSM ("" holds the
// requests that reached no vault, such as token requests).
func (s *Server) VaultCounts(vault string) map[string]int { return s.counts.vault(lower(vault)) }

// ResetCounts sets every counter back to zero.
func (s *Server) ResetCounts() { s.counts.reset() }
