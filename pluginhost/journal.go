package pluginhost

import (
	"context"
	"sync"
)

// journal is an append-only list that readers can wait on: the recorded
// metrics and log lines arrive asynchronously from the plugin.
type journal[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced on every append
}

func newJournal[T any]() *journal[T] {
	return &journal[T]{changed: make(chan struct{})}
}

func (j *journal[T]) add(v T) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.items = append(j.items, v)
	close(j.changed)
	j.changed = make(chan struct{})
}

func (j *journal[T]) all() []T {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]T(nil), j.items...)
}

// wait returns the first item, in order of arrival, that match accepts,
// waiting for new items until ctx ends.
func (j *journal[T]) wait(ctx context.Context, match func(T) bool) (T, error) {
	seen := 0
	for {
		j.mu.Lock()
		items, changed := j.items[seen:], j.changed
		j.mu.Unlock()
		for _, v := range items {
			if match(v) {
				return v, nil
			}
		}
		seen += len(items)
		select {
		case <-changed:
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
	}
}
