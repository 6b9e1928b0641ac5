package azurekv

import "sync"

// maxWarned bounds an onceSet: past it, the set starts afresh.
const maxWarned = 4096

// onceSet remembers names, for what a backend does once per key per
// process (a warning, giving up a purge). It holds at most maxWarned names:
// when full it forgets them all, so that a vault with ever new odd keys
// cannot grow it without bound; a name may then come up once more.
type onceSet struct {
	mu    sync.Mutex
	names map[string]struct{}
}

func newOnceSet() *onceSet { return &onceSet{names: map[string]struct{}{}} }

// first records name and reports whether it was new.
func (s *onceSet) first(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.names[name]; ok {
		return false
	}
	if len(s.names) >= maxWarned {
		clear(s.names)
	}
	s.names[name] = struct{}{}
	return true
}

// seen reports whether name is recorded.
func (s *onceSet) seen(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.names[name]
	return ok
}
