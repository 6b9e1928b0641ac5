package gcpkms

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kmskeeper/kmskeeper/engine"
)

// pacer spaces background writes on the cloud's clock: one per interval
// after a burst, as a generic cell rate algorithm. The service's write quota
// is counted per minute of its own time, which the cloud clock estimates.
type pacer struct {
	clock    *cloudClock
	interval time.Duration
	burst    int

	mu  sync.Mutex
	tat time.Time // theoretical arrival time of the next write
}

// maxPacerSleep bounds one sleep, so that a cloud clock found to have
// jumped ahead is noticed.
const maxPacerSleep = time.Second

// wait blocks until a write may be sent. It fails at once, with
// ResourceExhausted, when the wait would outlast ctx.
func (p *pacer) wait(ctx context.Context, what string) error {
	for {
		p.mu.Lock()
		now := p.clock.Now()
		tat := p.tat
		if tat.Before(now) {
			tat = now
		}
		wait := tat.Sub(now) - time.Duration(p.burst-1)*p.interval
		if wait <= 0 {
			p.tat = tat.Add(p.interval)
			p.mu.Unlock()
			return nil
		}
		p.mu.Unlock()
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return paced(what, fmt.Sprintf("the next slot is in %v", wait.Round(time.Millisecond)))
		}
		select {
		case <-ctx.Done():
			return paced(what, ctx.Err().Error())
		case <-time.After(min(wait, maxPacerSleep)):
		}
	}
}

// paced is the error of a background write the pacer did not let through.
func paced(what, why string) error {
	return engine.Errorf(codes.ResourceExhausted, "%s: not sent: background writes are paced under 60 writes a minute and the next slot is past this pass's deadline: %s", what, why)
}
