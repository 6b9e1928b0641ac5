package keyvault

import (
	"math"
	"sync"
	"time"
)

// throttleWindow is the period over which Key Vault counts transactions.
const throttleWindow = 10 * time.Second

// throttleUnits is the weight of a whole 10-second budget. Each request
// weighs throttleUnits/limit of its class, so mixed traffic is weighted and
// summed like the service does (248 HSM RSA-4096 GETs plus 16 HSM RSA-2048
// GETs reach the limit).
const throttleUnits = 1_000_000

// keyClass says which published limit a request counts against.
type keyClass struct {
	hsm    bool
	rsa    bool
	bits   int  // RSA modulus size
	create bool // key creation (also import, rotate, restore)
}

// limit returns the published per-vault limit per 10 s for the class
// (Azure Key Vault service limits, key transactions).
func (c keyClass) limit() int {
	switch {
	case c.create && c.hsm:
		return 10
	case c.create:
		return 20
	}
	other := 4000
	if c.rsa {
		switch {
		case c.bits >= 4096:
			other = 500
		case c.bits >= 3072:
			other = 1000
		}
	}
	if c.hsm {
		other /= 2
	}
	return other
}

// throttle keeps the weighted sliding window of one vault.
type throttle struct {
	mu      sync.Mutex
	entries []throttleEntry
	sum     int
}

type throttleEntry struct {
	at     time.Time
	weight int
}

// admit records the request and reports whether it fits the budget; when it
// does not, it returns how long until it would (the request is not counted:
// 429s do not count toward the limit).
func (t *throttle) admit(now time.Time, c keyClass) (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cut := now.Add(-throttleWindow)
	i := 0
	for ; i < len(t.entries) && !t.entries[i].at.After(cut); i++ {
		t.sum -= t.entries[i].weight
	}
	t.entries = t.entries[i:]
	w := int(math.Ceil(float64(throttleUnits) / float64(c.limit())))
	if t.sum+w <= throttleUnits {
		t.entries = append(t.entries, throttleEntry{at: now, weight: w})
		t.sum += w
		return true, 0
	}
	// Time until enough weight leaves the window.
	need := t.sum + w - throttleUnits
	for _, e := range t.entries {
		need -= e.weight
		if need <= 0 {
			return false, e.at.Add(throttleWindow).Sub(now)
		}
	}
	return false, throttleWindow
}

func (t *throttle) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.entries, t.sum = nil, 0
}

// SetThrottling turns the published per-vault limits on or off (off by
// default). Managed HSMs are never throttled, as documented for the service.
func (s *Server) SetThrottling(on bool) {
	s.throttleOn.Store(on)
	if !on {
		for _, v := range s.vaults {
			v.throttle.reset()
		}
	}
}
