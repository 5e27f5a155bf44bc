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

// Delivery sends pending notifications. A notification accepted through
// Accepting is claimed in the transaction that stores it and handed to a
// worker of this instance when one has room (and the breaker is closed);
// one goroutine claims the others that fall due — retries, the ones
// accepted by other instances or without room — as many at once as there is
// room for, in one transaction. Each worker sends through the
// breaker on a connection of its own that it keeps between messages (when
// the Sender can open Sessions) and records the outcome, keeping its claim
// until the record has committed; the workers' records share commits
// (sqldb's group commit).
type Delivery struct {
	Store       Store
	Sender      Sender
	Breaker     *breaker.Breaker
	From        string
	Workers     int           // concurrent sends; 4
	MaxAttempts int           // temporary failures before giving up; 8
	Backoff     retry.Backoff // between retries; 1 s doubling to 10 min
	Lease       time.Duration // a claim lasts unless renewed (DELIVERY_LEASE); 10 s
	// IdleClose is how long a worker keeps its SMTP connection open with
	// nothing to send (SMTP_IDLE_CLOSE); 5 s.
	IdleClose time.Duration
	// Committed returns a channel closed at the store's next commit
	// (sqldb.DB.Committed): a notification accepted wakes the claimer.
	Committed func() <-chan struct{}
	Log       *slog.Logger
	Metrics   *metrics.Set

	poke    chan struct{}
	once    sync.Once
	work    chan claim    // claimed, for the workers
	slots   chan struct{} // a send on work takes one first; a worker frees it
	mu      sync.Mutex
	closed  bool           // Run has ended: Accept claims nothing more
	handing sync.WaitGroup // Accepts holding a slot
}

// claim is a notification claimed for a worker, and until when.
type claim struct {
	n     Notification
	until time.Time
}

func (d *Delivery) init() {
	d.once.Do(func() {
		d.poke = make(chan struct{}, 1)
		d.Workers, d.MaxAttempts = cmp.Or(d.Workers, 4), cmp.Or(d.MaxAttempts, 8)
		d.Backoff = d.Backoff.Or(time.Second, 10*time.Minute)
		d.Lease = cmp.Or(d.Lease, 10*time.Second)
		d.IdleClose = cmp.Or(d.IdleClose, 5*time.Second)
		d.work = make(chan claim, 4*d.Workers)
		d.slots = make(chan struct{}, cap(d.work))
	})
}

// slot takes a place in work, if there is one free.
func (d *Delivery) slot() bool {
	select {
	case d.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Accepting returns the store with an Accept that claims each new
// notification for a worker of d, in the transaction that stores it, when
// one has room: no claim transaction of its own.
func (d *Delivery) Accepting() Store { return acceptingStore{d.Store, d} }

type acceptingStore struct {
	Store
	d *Delivery
}

func (s acceptingStore) Accept(ctx context.Context, key string, req Request) (Notification, bool, error) {
	d := s.d
	d.init()
	d.mu.Lock()
	held := !d.closed && d.Breaker.State() == "closed" && d.slot()
	if held {
		d.handing.Add(1)
	}
	d.mu.Unlock()
	if !held { // the claimer takes it from the store
		return d.Store.AcceptClaimed(ctx, key, req, time.Time{})
	}
	defer d.handing.Done()
	until := time.Now().Add(d.Lease)
	n, created, err := d.Store.AcceptClaimed(ctx, key, req, until)
	if err != nil || !created {
		<-d.slots
		return n, created, err
	}
	d.work <- claim{n, until} // a slot was taken: this does not block
	return n, true, nil
}

// wake lets the claimer look for work at once.
func (d *Delivery) wake() {
	d.init()
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done; sends in progress are finished and
// recorded first, and claims no worker took are given back.
func (d *Delivery) Run(ctx context.Context) {
	d.init()
	var wg sync.WaitGroup
	for range d.Workers {
		wg.Go(func() { d.deliver(ctx) })
	}
	d.claim(ctx)
	wg.Wait()
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.handing.Wait()
	d.giveBack(ctx)
}

// claim fills work with due notifications until ctx is done: as many as
// there is room for (up to half of work, so that Accept finds room too), in
// one transaction.
func (d *Delivery) claim(ctx context.Context) {
	for ctx.Err() == nil {
		var committed <-chan struct{}
		if d.Committed != nil {
			committed = d.Committed() // before looking: a commit after it wakes us
		}
		for d.Breaker.State() == "open" && ctx.Err() == nil { // claim nothing, hold nothing
			d.giveBack(ctx)
			wctx, cancel := context.WithTimeout(ctx, time.Second) // and again: an Accept may have raced the opening
			d.Breaker.Wait(wctx)
			cancel()
		}
		room := 0
		for room < cap(d.slots)/2 && d.slot() {
			room++
		}
		if room == 0 { // work is full: the next worker to take one wakes us
			select {
			case <-d.poke:
			case <-ctx.Done():
			}
			continue
		}
		if ctx.Err() != nil {
			for range room {
				<-d.slots
			}
		} else {
			now := time.Now()
			until := now.Add(d.Lease)
			ns, err := d.Store.ClaimDue(context.WithoutCancel(ctx), now, until, room)
			for range room - len(ns) {
				<-d.slots
			}
			if err != nil {
				d.Log.Error("claim notifications", "err", err)
				retry.Sleep(ctx, time.Second)
				continue
			}
			for _, n := range ns {
				d.work <- claim{n, until} // slots were taken: this does not block
			}
			if len(ns) == room {
				continue // there may be more
			}
		}
		d.idle(ctx, committed)
	}
}

func (d *Delivery) deliver(ctx context.Context) {
	sent := d.Metrics.Counter("notifications_sent", "Notifications sent to the SMTP server.")
	failed := d.Metrics.Counter("notifications_failed", "Notifications given up: a permanent error, or the last attempt failed.")
	retries := d.Metrics.Counter("notifications_retries", "Failed sends of a notification that will be tried again.")
	took := d.Metrics.Timer("notifications_delivery", "Time to send a notification that was sent, from building the mail to the SMTP server's answer.")
	sender, closeConn := d.session()
	defer closeConn()
	idle := time.NewTimer(d.IdleClose)
	defer idle.Stop()
	for ctx.Err() == nil {
		if d.Breaker.State() == "open" { // the queued mails wait elsewhere: another instance may have better luck
			d.giveBack(ctx)
		}
		d.Breaker.Wait(ctx)
		var c claim
		select {
		case c = <-d.work:
			<-d.slots
		case <-idle.C: // nothing to send for a while: let the connection go
			closeConn()
			continue
		case <-ctx.Done():
			return
		}
		d.wake() // room in work: the claimer may fill it
		n := c.n
		// The send and its record finish even when ctx ends: a mail sent must
		// be marked sent, or it would go out again.
		bg := context.WithoutCancel(ctx)
		// held is the claim in force: renewals move it, and the outcome is
		// recorded under it (a claim lost meanwhile records nothing).
		held := c.until
		if time.Until(held) < d.Lease*2/3 { // it waited long (breaker open): claim it anew first
			var ok bool
			var err error
			now := time.Now()
			if n, ok, err = d.Store.Reclaim(bg, n.ID, held, now, now.Add(d.Lease)); err != nil || !ok {
				d.record(err)
				continue // taken by another instance, or done
			}
			held = now.Add(d.Lease)
		}
		start := time.Now()
		// A slow send keeps its claim. Only keep's goroutine touches held
		// until keep() has returned (it waits for it).
		keep := retry.Every(bg, d.Lease/3, func(ctx context.Context) {
			until := time.Now().Add(d.Lease)
			ok, err := d.Store.Renew(ctx, n.ID, held, until)
			switch {
			case err != nil:
				d.record(err)
			case ok:
				held = until
			default:
				d.Log.Warn("notification claim lost while sending: another instance may send it too", "id", n.ID)
			}
		})
		err := d.send(bg, sender, n)
		idle.Reset(d.IdleClose)
		if err == nil { // the claim is kept until the mark commits: nobody sends it again meanwhile
			took.UpdateSince(start)
			d.record(d.Store.MarkSent(bg, n.ID, time.Now()))
			sent.Inc(1)
		}
		keep()
		final := held
		switch {
		case err == nil:
		case errors.Is(err, breaker.ErrOpen): // half-open with a probe in flight, or just opened
			d.record(d.Store.Release(bg, Held{n.ID, final}))
			retry.Sleep(ctx, 50*time.Millisecond+rand.N(50*time.Millisecond))
		case !Temporary(err):
			failed.Inc(1)
			d.Log.Warn("notification failed", "id", n.ID, "err", err)
			d.record(d.Store.MarkFailed(bg, n.ID, final, n.Attempts+1, err.Error()))
		case n.Attempts+1 >= d.MaxAttempts:
			failed.Inc(1)
			d.Log.Warn("notification failed after retries", "id", n.ID, "attempts", n.Attempts+1, "err", err)
			d.record(d.Store.MarkFailed(bg, n.ID, final, n.Attempts+1, err.Error()))
		default:
			retries.Inc(1)
			next := time.Now().Add(d.Backoff.Wait(n.Attempts + 1))
			d.Log.Info("notification will be retried", "id", n.ID, "attempt", n.Attempts+1, "at", next, "err", err)
			d.record(d.Store.MarkRetry(bg, n.ID, final, n.Attempts+1, next, err.Error()))
		}
	}
}

// giveBack releases the claims queued in work, in one transaction; a
// claim that ran out and was taken by another instance meanwhile is left
// to it (Release clears only the claim held).
func (d *Delivery) giveBack(ctx context.Context) {
	var held []Held
	for more := true; more; {
		select {
		case c := <-d.work:
			<-d.slots
			held = append(held, Held{c.n.ID, c.until})
		default:
			more = false
		}
	}
	if len(held) > 0 {
		d.record(d.Store.Release(context.WithoutCancel(ctx), held...))
	}
}

// session returns the sender a worker uses, and how to let its connection
// go: a Session of its own when Sender opens them.
func (d *Delivery) session() (Sender, func()) {
	if ss, ok := d.Sender.(Sessions); ok {
		s := ss.Session()
		return s, func() { s.Close() }
	}
	return d.Sender, func() {}
}

func (d *Delivery) send(ctx context.Context, sender Sender, n Notification) error {
	m, err := BuildMessage(d.From, n, time.Now())
	if err != nil {
		return &SendError{Err: err}
	}
	return d.Breaker.Do(func() error { return sender.Send(ctx, m) })
}

func (d *Delivery) record(err error) {
	if err != nil {
		d.Log.Error("record delivery", "err", err)
	}
}

// idle waits until committed is closed, a worker wakes it, the next
// notification falls due, or a second passes (to see work accepted by other
// instances).
func (d *Delivery) idle(ctx context.Context, committed <-chan struct{}) {
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
