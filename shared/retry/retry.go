// Package retry spaces out attempts at something that failed: exponential
// backoff with jitter, and a sleep that ends with its context.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with jitter: after n failures in a row the
// wait is about Min·2^(n−1), at most Max — half of it fixed, half random, so
// that many clients failing together do not retry together.
type Backoff struct {
	Min time.Duration
	Max time.Duration
}

// Or returns b with a zero Min set to min and a Max below Min set to max
// (or Min, when that is larger): b with its defaults.
func (b Backoff) Or(min, max time.Duration) Backoff {
	if b.Min <= 0 {
		b.Min = min
	}
	if b.Max < b.Min {
		b.Max = max
		if b.Max < b.Min {
			b.Max = b.Min
		}
	}
	return b
}

// Wait returns how long to wait after failures failures in a row (1 or more).
func (b Backoff) Wait(failures int) time.Duration {
	d := b.Min << min(max(failures, 1)-1, 30)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits for d, or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Every calls fn every d, in a goroutine of its own, until stop is called;
// stop returns once fn is no longer running. It keeps a lease alive while
// the work it covers takes longer than expected.
func Every(ctx context.Context, d time.Duration, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn(ctx)
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}
