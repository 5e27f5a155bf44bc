package calendar

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"syndic/shared/breaker"
	"syndic/shared/metrics"
	"syndic/shared/retry"
)

// outbox is what the notifier needs of the store.
type outbox interface {
	ClaimOutbox(ctx context.Context, id int64, now time.Time, lease time.Duration, held time.Time) (OutboxEntry, bool, error)
	ClaimOutboxAll(ctx context.Context, ids []int64, now, until time.Time) ([]OutboxEntry, error)
	ReleaseOutbox(ctx context.Context, ids []int64, held []time.Time) error
	RenewOutbox(ctx context.Context, id int64, held, until time.Time) (bool, error)
	DueOutbox(ctx context.Context, now time.Time, limit int) ([]int64, error)
	PendingOutbox(ctx context.Context) (int64, error)
	MarkOutbox(ctx context.Context, id int64, held time.Time, status string, attempts int, lastErr string, next time.Time) error
	MarkOutboxSent(ctx context.Context, id int64, attempts int, at time.Time) error
}

// Notifier hands outbox entries to the notifications service. Each commit
// wakes it to sweep the due entries into a buffered channel, which the
// workers take them from; what does not fit waits in the outbox for the
// next sweep (after a commit, every Sweep, and at start). While the breaker
// is closed a sweep claims the entries it queues, all in one transaction;
// a worker claims an entry itself when it was queued unclaimed or its
// claim has run low waiting. The entries accepted by notifications are
// marked sent in batches: whatever was accepted while the last batch was
// being written goes in the next transaction. Calls go through a circuit
// breaker: while it is open the workers wait, without calling, without
// spinning and without holding a claim.
type Notifier struct {
	Store       outbox
	URL         string // notifications base URL
	Authorize   func(*http.Request)
	Client      *http.Client
	Breaker     *breaker.Breaker
	Buffer      int           // channel capacity (NOTIFY_BUFFER); 1000
	Workers     int           // concurrent calls; 4
	MaxAttempts int           // failed calls before an entry is marked failed; 10
	Backoff     retry.Backoff // between retries; 1 s doubling to 5 min
	Sweep       time.Duration // how often the outbox is swept; 5 s
	// Lease is how long a replica's claim on an entry lasts unless renewed;
	// it is renewed three times as often while the call is under way, so
	// the entries a replica that died had claimed go out after at most
	// this long. 10 s.
	Lease time.Duration
	// Committed returns a channel closed at the store's next commit
	// (sqldb.DB.Committed): entries written are swept at once.
	Committed func() <-chan struct{}
	Log       *slog.Logger
	Metrics   *metrics.Set

	once     sync.Once
	closed   bool // Run has ended: nothing more is queued (under mu)
	ch       chan queued
	mu       sync.Mutex
	inflight map[int64]bool // queued or being sent: not queued twice

	sent, failed, retries interface{ Inc(int64) } // registered at init: 0 before the first
}

func (n *Notifier) init() {
	n.once.Do(func() {
		n.Buffer, n.Workers, n.MaxAttempts = cmp.Or(n.Buffer, 1000), cmp.Or(n.Workers, 4), cmp.Or(n.MaxAttempts, 10)
		n.Backoff = n.Backoff.Or(time.Second, 5*time.Minute)
		n.Sweep, n.Lease = cmp.Or(n.Sweep, 5*time.Second), cmp.Or(n.Lease, 10*time.Second)
		if n.Client == nil {
			n.Client = &http.Client{Timeout: 10 * time.Second}
		}
		n.ch = make(chan queued, n.Buffer)
		n.inflight = map[int64]bool{}
		n.sent = n.Metrics.Counter("notify_sent", "Notification requests that notifications accepted (200 or 202).")
		n.failed = n.Metrics.Counter("notify_failed", "Notification requests given up: a permanent error, or the last attempt failed.")
		n.retries = n.Metrics.Counter("notify_retries", "Failed notification requests that will be tried again.")
		n.Metrics.GaugeFunc("notify_queue", "Outbox entries queued in memory for the workers.", func() int64 { return int64(len(n.ch)) })
		n.Metrics.GaugeFunc("notify_pending", "Outbox entries not yet sent to notifications or failed (in the shared database).", func() int64 {
			c, _ := n.Store.PendingOutbox(context.Background())
			return c
		})
	})
}

// queued is an outbox entry for a worker: claimed by the sweep until until
// (e is then the entry), or unclaimed (until zero).
type queued struct {
	id    int64
	e     OutboxEntry
	until time.Time
}

// fresh returns the ids not queued or being sent, and marks them so.
func (n *Notifier) fresh(ids []int64) []int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := ids[:0]
	for _, id := range ids {
		if !n.inflight[id] {
			n.inflight[id] = true
			out = append(out, id)
		}
	}
	return out
}

// enqueue offers entries to the workers without ever blocking: one that
// does not fit stays in the outbox for the next sweep (its claim given back).
func (n *Notifier) enqueue(ctx context.Context, qs []queued) {
	overflow := n.Metrics.Counter("notify_queue_full", "Outbox entries that did not fit the in-memory queue; the next sweep offers them again.")
	var back []int64
	var held []time.Time
	for _, q := range qs {
		select {
		case n.ch <- q:
		default:
			overflow.Inc(1)
			n.done(q.id)
			if !q.until.IsZero() {
				back, held = append(back, q.id), append(held, q.until)
			}
		}
	}
	if len(back) > 0 {
		n.record(n.Store.ReleaseOutbox(context.WithoutCancel(ctx), back, held))
	}
}

func (n *Notifier) done(id int64) {
	n.mu.Lock()
	delete(n.inflight, id)
	n.mu.Unlock()
}

// Run loads the pending entries, then delivers and sweeps until ctx is
// done. A call in progress finishes and is recorded before Run returns.
func (n *Notifier) Run(ctx context.Context) {
	n.init()
	var wg sync.WaitGroup
	for range n.Workers {
		wg.Go(func() {
			for {
				select {
				case q := <-n.ch:
					n.deliver(ctx, q)
					n.done(q.id)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	defer func() {
		wg.Wait()
		n.releaseQueued(context.WithoutCancel(ctx))
	}()
	t := time.NewTicker(n.Sweep)
	defer t.Stop()
	for {
		var committed <-chan struct{}
		if n.Committed != nil {
			committed = n.Committed() // before the sweep: a commit during it sweeps again
		}
		n.sweep(ctx) // the first: what a previous run left pending
		swept := time.Now()
		select {
		case <-committed:
			// Most commits hand their entries over themselves: sweep for the
			// rest at most every sweepGap, not after each of a burst.
			retry.Sleep(ctx, sweepGap-time.Since(swept))
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// sweepGap is the least time between two sweeps that commits wake.
const sweepGap = 10 * time.Millisecond

// sweep enqueues due entries (as many as the channel has room for).
func (n *Notifier) sweep(ctx context.Context) {
	room := cap(n.ch) - len(n.ch)
	if room <= 0 {
		return
	}
	now := time.Now()
	ids, err := n.Store.DueOutbox(ctx, now, room)
	if err != nil {
		if ctx.Err() == nil {
			n.Log.Error("sweep outbox", "err", err)
		}
		return
	}
	ids = n.fresh(ids)
	if len(ids) == 0 {
		return
	}
	qs := make([]queued, 0, len(ids))
	if n.Breaker.State() == "closed" {
		until := now.Add(n.Lease)
		es, err := n.Store.ClaimOutboxAll(context.WithoutCancel(ctx), ids, now, until)
		if err != nil {
			n.Log.Error("sweep outbox", "err", err)
			for _, id := range ids {
				n.done(id)
			}
			return
		}
		got := map[int64]bool{}
		for _, e := range es {
			qs = append(qs, queued{id: e.ID, e: e, until: until})
			got[e.ID] = true
		}
		for _, id := range ids {
			if !got[id] { // another replica was first
				n.done(id)
			}
		}
	} else { // the workers wait: claims would run out in the queue
		for _, id := range ids {
			qs = append(qs, queued{id: id})
		}
	}
	n.enqueue(ctx, qs)
}

// claimUntil (for SQLStore.HandTo) says to claim entries written at now
// while the breaker is closed and the queue is less than half full.
func (n *Notifier) claimUntil(now time.Time) (time.Time, bool) {
	n.init()
	if n.Breaker.State() != "closed" || len(n.ch) >= cap(n.ch)/2 {
		return time.Time{}, false
	}
	return now.Add(n.Lease), true
}

// hand queues entries claimed until until in the transaction that wrote
// them; those that do not fit, or come after Run ended, are given back.
func (n *Notifier) hand(ctx context.Context, es []OutboxEntry, until time.Time) {
	n.init()
	var back []int64
	var held []time.Time
	n.mu.Lock()
	for _, e := range es {
		if n.closed || n.inflight[e.ID] {
			back, held = append(back, e.ID), append(held, until)
			continue
		}
		n.inflight[e.ID] = true // before a worker can take it and say done
		select {
		case n.ch <- queued{id: e.ID, e: e, until: until}:
		default:
			delete(n.inflight, e.ID)
			back, held = append(back, e.ID), append(held, until)
		}
	}
	n.mu.Unlock()
	if len(back) > 0 {
		n.record(n.Store.ReleaseOutbox(context.WithoutCancel(ctx), back, held))
	}
}

// releaseQueued gives back the claims on the entries left in the queue at
// shutdown, so another replica (or the next start) need not wait them out.
func (n *Notifier) releaseQueued(ctx context.Context) {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	var ids []int64
	var held []time.Time
	for {
		select {
		case q := <-n.ch:
			n.done(q.id)
			if !q.until.IsZero() {
				ids, held = append(ids, q.id), append(held, q.until)
			}
			continue
		default:
		}
		break
	}
	if len(ids) > 0 {
		n.record(n.Store.ReleaseOutbox(ctx, ids, held))
	}
}

// deliver posts one entry until it is sent, fails for good, or is put off.
// While the breaker is open it holds no claim: a replica whose calls go
// through may take the entry meanwhile (a claim the sweep made runs out).
func (n *Notifier) deliver(ctx context.Context, q queued) {
	bg := context.WithoutCancel(ctx) // a call made is recorded, even at shutdown
	id, e, held := q.id, q.e, q.until
	for {
		n.Breaker.Wait(ctx)
		if ctx.Err() != nil { // shutting down before the call: give it back untried
			if !held.IsZero() {
				n.record(n.Store.ReleaseOutbox(bg, []int64{id}, []time.Time{held}))
			}
			return
		}
		if time.Until(held) < n.Lease*2/3 { // unclaimed, or its claim ran low in the queue
			var ok bool
			var err error
			now := time.Now()
			if e, ok, err = n.Store.ClaimOutbox(bg, id, now, n.Lease, held); err != nil || !ok {
				n.record(err)
				return // gone, done, not due, or another replica's: the sweep brings it back when due
			}
			held = now.Add(n.Lease)
		}
		if !n.call(bg, e, held) {
			return
		}
		// The breaker refused the call (half-open with a probe in flight, or
		// it just opened) and the claim was given back: wait again.
		held = time.Time{}
		retry.Sleep(ctx, 50*time.Millisecond+rand.N(50*time.Millisecond))
	}
}

// call posts e through the breaker under the claim made until held,
// renewing it while the call is under way, and records the outcome under
// it. refused says the breaker refused the call: e is given back untried.
func (n *Notifier) call(bg context.Context, e OutboxEntry, held time.Time) (refused bool) {
	// Only keep's goroutine touches held until keep() has returned (it
	// waits for it).
	lost := false
	keep := retry.Every(bg, n.Lease/3, func(ctx context.Context) {
		until := time.Now().Add(n.Lease)
		ok, err := n.Store.RenewOutbox(ctx, e.ID, held, until)
		switch {
		case err != nil:
			if ctx.Err() == nil { // not keep() stopping a renewal still queued
				n.record(err)
			}
		case ok:
			held = until
		case !lost:
			lost = true
			n.Log.Warn("outbox claim lost during a call: another replica may call too (the Idempotency-Key keeps the mail single)", "outbox", e.ID)
		}
	})
	defer keep()
	err := n.Breaker.Do(func() error { return n.post(bg, e) })
	// A call accepted is recorded with the claim still renewed (keep is
	// deferred): no other replica posts it again before "sent" commits.
	// The workers' records share commits (sqldb's group commit).
	attempts := e.Attempts + 1
	if err == nil {
		n.record(n.Store.MarkOutboxSent(bg, e.ID, attempts, time.Now()))
		n.sent.Inc(1)
		return false
	}
	keep() // held is the claim's expiry from here on
	var perm *permanentError
	switch {
	case errors.Is(err, breaker.ErrOpen):
		n.record(n.Store.ReleaseOutbox(bg, []int64{e.ID}, []time.Time{held}))
		return true
	case errors.As(err, &perm) || attempts >= n.MaxAttempts:
		n.failed.Inc(1)
		n.Log.Warn("notification request failed", "outbox", e.ID, "attempts", attempts, "err", err)
		n.record(n.Store.MarkOutbox(bg, e.ID, held, "failed", attempts, err.Error(), time.Now()))
	default:
		n.retries.Inc(1)
		next := time.Now().Add(n.Backoff.Wait(attempts))
		n.Log.Info("notification request will be retried", "outbox", e.ID, "attempt", attempts, "at", next, "err", err)
		n.record(n.Store.MarkOutbox(bg, e.ID, held, "pending", attempts, err.Error(), next))
	}
	return false
}

func (n *Notifier) record(err error) {
	if err != nil {
		n.Log.Error("record notification", "err", err)
	}
}

// permanentError is an answer that retrying cannot change (4xx): it does
// not count against the breaker.
type permanentError struct{ error }

// IsPeerFailure reports whether err says notifications is unwell (it counts
// towards opening the breaker).
func IsPeerFailure(err error) bool {
	var perm *permanentError
	return !errors.As(err, &perm)
}

func (n *Notifier) post(ctx context.Context, e OutboxEntry) error {
	body, _ := json.Marshal(map[string]string{"to": e.To, "subject": e.Subject, "text": e.Text, "calendar": e.Calendar})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(n.URL, "/")+"/api/notifications", bytes.NewReader(body))
	if err != nil {
		return &permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", e.Key)
	if n.Authorize != nil {
		n.Authorize(req)
	}
	resp, err := n.Client.Do(req)
	if err != nil {
		return fmt.Errorf("notifications: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	// The rest read too (the answer is the stored notification, mail and
	// all): a body left unread closes the connection, and every call would
	// dial a new one.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge ||
		resp.StatusCode == http.StatusUnsupportedMediaType || resp.StatusCode == http.StatusUnprocessableEntity:
		// The request itself is wrong: no retry can change the answer. (401,
		// 403 and 404 say calendar is misconfigured: retried, and they open
		// the breaker, so an operator sees it.)
		return &permanentError{fmt.Errorf("notifications answered %d: %s", resp.StatusCode, bytes.TrimSpace(msg))}
	}
	return fmt.Errorf("notifications answered %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
}
