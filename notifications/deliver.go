package notifications

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"syndic/shared/breaker"
	"syndic/shared/metrics"
	"syndic/shared/retry"
)

// Delivery sends pending notifications: workers claim due ones from the
// store, send them through the breaker, and record the outcome.
type Delivery struct {
	Store       Store
	Sender      Sender
	Breaker     *breaker.Breaker
	From        string
	Workers     int           // concurrent sends; 4
	MaxAttempts int           // temporary failures before giving up; 8
	Backoff     retry.Backoff // between retries; 1 s doubling to 10 min
	Lease       time.Duration // a claim lasts unless renewed (DELIVERY_LEASE); 10 s
	// Committed returns a channel closed at the store's next commit
	// (sqldb.DB.Committed): a notification accepted wakes an idle worker.
	Committed func() <-chan struct{}
	Log       *slog.Logger
	Metrics   *metrics.Set

	poke chan struct{}
	once sync.Once
}

func (d *Delivery) init() {
	d.once.Do(func() {
		d.poke = make(chan struct{}, 1)
		d.Workers, d.MaxAttempts = cmp.Or(d.Workers, 4), cmp.Or(d.MaxAttempts, 8)
		d.Backoff = d.Backoff.Or(time.Second, 10*time.Minute)
		d.Lease = cmp.Or(d.Lease, 10*time.Second)
	})
}

// wake lets an idle worker look for work at once.
func (d *Delivery) wake() {
	d.init()
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done; a send in progress is finished first.
func (d *Delivery) Run(ctx context.Context) {
	d.init()
	var wg sync.WaitGroup
	for range d.Workers {
		wg.Go(func() { d.work(ctx) })
	}
	wg.Wait()
}

func (d *Delivery) work(ctx context.Context) {
	sent := d.Metrics.Counter("notifications_sent", "Notifications sent to the SMTP server.")
	failed := d.Metrics.Counter("notifications_failed", "Notifications given up: a permanent error, or the last attempt failed.")
	retries := d.Metrics.Counter("notifications_retries", "Failed sends of a notification that will be tried again.")
	took := d.Metrics.Timer("notifications_delivery", "Time to send a notification that was sent, from building the mail to the SMTP server's answer.")
	for ctx.Err() == nil {
		d.Breaker.Wait(ctx)
		n, ok, err := d.Store.Claim(context.WithoutCancel(ctx), time.Now(), d.Lease)
		if err != nil {
			d.Log.Error("claim notification", "err", err)
			retry.Sleep(ctx, time.Second)
			continue
		}
		if !ok {
			d.idle(ctx)
			continue
		}
		d.wake() // there may be more: let an idle worker look too
		// The send and its record finish even when ctx ends: a mail sent must
		// be marked sent, or it would go out again.
		bg := context.WithoutCancel(ctx)
		start := time.Now()
		keep := retry.Every(bg, d.Lease/3, func(ctx context.Context) { // a slow send keeps its claim
			d.record(d.Store.Renew(ctx, n.ID, time.Now().Add(d.Lease)))
		})
		err = d.send(bg, n)
		keep()
		switch {
		case err == nil:
			took.UpdateSince(start)
			sent.Inc(1)
			d.record(d.Store.MarkSent(bg, n.ID, time.Now()))
		case errors.Is(err, breaker.ErrOpen): // half-open with a probe in flight, or just opened
			d.record(d.Store.Release(bg, n.ID))
			retry.Sleep(ctx, 50*time.Millisecond+rand.N(50*time.Millisecond))
		case !Temporary(err):
			failed.Inc(1)
			d.Log.Warn("notification failed", "id", n.ID, "err", err)
			d.record(d.Store.MarkFailed(bg, n.ID, n.Attempts+1, err.Error()))
		case n.Attempts+1 >= d.MaxAttempts:
			failed.Inc(1)
			d.Log.Warn("notification failed after retries", "id", n.ID, "attempts", n.Attempts+1, "err", err)
			d.record(d.Store.MarkFailed(bg, n.ID, n.Attempts+1, err.Error()))
		default:
			retries.Inc(1)
			next := time.Now().Add(d.Backoff.Wait(n.Attempts + 1))
			d.Log.Info("notification will be retried", "id", n.ID, "attempt", n.Attempts+1, "at", next, "err", err)
			d.record(d.Store.MarkRetry(bg, n.ID, n.Attempts+1, next, err.Error()))
		}
	}
}

func (d *Delivery) send(ctx context.Context, n Notification) error {
	m, err := BuildMessage(d.From, n, time.Now())
	if err != nil {
		return &SendError{Err: err}
	}
	return d.Breaker.Do(func() error { return d.Sender.Send(ctx, m) })
}

func (d *Delivery) record(err error) {
	if err != nil {
		d.Log.Error("record delivery", "err", err)
	}
}

// idle waits until a commit or another worker wakes it, the next
// notification falls due, or a second passes (to see work accepted by other
// instances).
func (d *Delivery) idle(ctx context.Context) {
	var committed <-chan struct{}
	if d.Committed != nil {
		committed = d.Committed() // before NextDue: a commit after it wakes us
	}
	wait := time.Second
	if at, ok, err := d.Store.NextDue(ctx); err == nil && ok {
		wait = min(wait, max(time.Until(at), time.Millisecond))
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-d.poke:
	case <-committed:
	case <-t.C:
	case <-ctx.Done():
	}
}
