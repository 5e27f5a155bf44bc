// Package breaker wraps sony/gobreaker for calls to a peer: it counts only
// the failures that say the peer is unwell, reports its state in logs and
// metrics, and lets a worker wait out an open breaker without spinning.
package breaker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"syndic/shared/metrics"
)

// ErrOpen is returned, without calling the peer, while the breaker is open
// (or half-open and already probing).
var ErrOpen = errors.New("circuit breaker open")

// Settings configure a Breaker.
type Settings struct {
	Name     string        // the peer, e.g. "notifications"
	Failures uint32        // consecutive failures that open it; 5 when 0
	OpenFor  time.Duration // how long it stays open before a probe; 10 s when 0
	// Counts reports whether err says the peer is unwell (it counts towards
	// opening); nil counts every error.
	Counts func(err error) bool
	Log    *slog.Logger
	Met    *metrics.Set
}

// Breaker guards calls to one peer.
type Breaker struct {
	cb      *gobreaker.CircuitBreaker[struct{}]
	openFor time.Duration

	mu       sync.Mutex
	openedAt time.Time     // when it last opened
	closed   chan struct{} // closed when it leaves the open state

	rejected, opened interface{ Inc(int64) }
}

// New returns a closed Breaker.
func New(s Settings) *Breaker {
	if s.Failures == 0 {
		s.Failures = 5
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 10 * time.Second
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	if s.Met == nil {
		s.Met = metrics.New()
	}
	b := &Breaker{openFor: s.OpenFor, closed: make(chan struct{})}
	close(b.closed)
	label := `{peer="` + s.Name + `"}`
	b.rejected = s.Met.Counter("breaker_rejected"+label, "Calls the circuit breaker refused while open or half-open, without calling the peer.")
	b.opened = s.Met.Counter("breaker_opened"+label, "Times the circuit breaker opened.")
	counts := s.Counts
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        s.Name,
		MaxRequests: 1,
		Timeout:     s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= s.Failures },
		IsSuccessful: func(err error) bool {
			return err == nil || counts != nil && !counts(err)
		},
		// Runs under gobreaker's lock: it must not call the breaker.
		OnStateChange: func(name string, from, to gobreaker.State) {
			s.Log.Warn("circuit breaker", "peer", name, "from", from.String(), "to", to.String())
			b.mu.Lock()
			defer b.mu.Unlock()
			switch {
			case to == gobreaker.StateOpen:
				b.opened.Inc(1)
				b.openedAt = time.Now()
				select {
				case <-b.closed:
					b.closed = make(chan struct{})
				default:
				}
			case from == gobreaker.StateOpen:
				select {
				case <-b.closed:
				default:
					close(b.closed)
				}
			}
		},
	})
	s.Met.GaugeFunc("breaker_state"+label, "Circuit breaker state: 0 closed, 1 half-open, 2 open.", func() int64 { return int64(b.cb.State()) })
	return b
}

// Do calls fn through the breaker. While it is open, Do returns ErrOpen
// without calling fn.
func (b *Breaker) Do(fn func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		b.rejected.Inc(1)
		return ErrOpen
	}
	return err
}

// State is "closed", "half-open" or "open".
func (b *Breaker) State() string { return b.cb.State().String() }

// Wait blocks while the breaker is open: until its open time has passed
// (a probe may go through) or ctx is done. It returns at once when closed.
func (b *Breaker) Wait(ctx context.Context) {
	b.mu.Lock()
	until := b.openedAt.Add(b.openFor)
	closed := b.closed
	b.mu.Unlock()
	d := time.Until(until)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-closed:
	case <-ctx.Done():
	}
}
