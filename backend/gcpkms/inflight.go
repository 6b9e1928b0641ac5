package gcpkms

import "sync"

// inflight counts the calls in progress on a Backend, so that Close waits
// for them: the engine swaps backends on a re-Configure and closes the old
// one while signatures may still be running on it, and closing a gRPC
// connection would cancel them.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle *sync.Cond
}

func newInflight() *inflight {
	f := &inflight{}
	f.idle = sync.NewCond(&f.mu)
	return f
}

// start counts a call; the returned func ends it.
func (f *inflight) start() func() {
	f.mu.Lock()
	f.n++
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.n--
		if f.n == 0 {
			f.idle.Broadcast()
		}
		f.mu.Unlock()
	}
}

// wait returns once no call is in progress. Calls are bounded by their
// contexts' deadlines, so this ends.
func (f *inflight) wait() {
	f.mu.Lock()
	for f.n > 0 {
		f.idle.Wait()
	}
	f.mu.Unlock()
}
