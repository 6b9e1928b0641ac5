package keymanager

import "time"

// failedCreate is a GenerateKey whose backend call failed. A creation that
// failed may still have taken effect (the answer was lost, or arrived after
// the budget ran out): the key it made carries this server's ID, is never
// served, and would otherwise be taken for another process's key.
type failedCreate struct {
	keyID    string
	from, to time.Time // the cloud's time, as estimated, around the call
}

// failedCreateSlack widens a failed creation's window for the difference
// between the cloud's clock and the estimate of it.
const failedCreateSlack = time.Minute

// noteFailedCreate records a failed creation of keyID that started at from
// (cloud time). Records older than the stale period are dropped: by then a
// key they explain would have been retired by an earlier cleanup pass.
func (m *Manager) noteFailedCreate(keyID string, from time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cloudNow()
	kept := m.failed[:0]
	for _, f := range m.failed {
		if now.Sub(f.to) < m.schedule.StaleAfter {
			kept = append(kept, f)
		}
	}
	m.failed = append(kept, failedCreate{keyID: keyID, from: from, to: now})
}

// leftByFailedCreate reports whether g, a generation with this server's ID
// that this process does not know, was created during one of its failed
// creations of the same key ID. The caller holds m.mu.
func (m *Manager) leftByFailedCreate(g Generation) bool {
	for _, f := range m.failed {
		if f.keyID == g.KeyID && !g.Created.Before(f.from.Add(-failedCreateSlack)) && !g.Created.After(f.to.Add(failedCreateSlack)) {
			return true
		}
	}
	return false
}
