package notifications

import (
	"context"
	"time"
)

// Store keeps notifications and hands them to delivery workers.
//
// Accept wraps derrors.ErrUnprocessable when the key was used with another
// request; Get wraps derrors.ErrNotFound for an unknown id.
type Store interface {
	// Accept stores req under key, or returns the notification already
	// stored under it (created false).
	Accept(ctx context.Context, key string, req Request) (n Notification, created bool, err error)
	// AcceptClaimed is Accept, claiming a new notification until until in
	// the same transaction (unclaimed when until is zero).
	AcceptClaimed(ctx context.Context, key string, req Request, until time.Time) (n Notification, created bool, err error)
	Get(ctx context.Context, id int64) (Notification, error)
	// List returns the newest notifications first, of one status or all ("").
	List(ctx context.Context, status string, limit int) ([]Notification, error)
	// Page is List from the newest below id before (0: from the newest).
	Page(ctx context.Context, status string, limit int, before int64) ([]Notification, error)

	// ClaimDue leases up to limit due notifications until until (none:
	// nothing due, or another claim was first).
	ClaimDue(ctx context.Context, now, until time.Time, limit int) ([]Notification, error)
	// Reclaim renews a claim made until held, or takes the notification
	// again if that claim ran out and nobody else has it (ok false: someone
	// has, or it is done).
	Reclaim(ctx context.Context, id int64, held, now, until time.Time) (n Notification, ok bool, err error)
	// Renew extends the claim on notification id made until held, while it
	// is being sent (ok false: that claim is no longer the one in force).
	Renew(ctx context.Context, id int64, held, until time.Time) (ok bool, err error)
	// NextDue is when the next pending notification falls due (ok false: none).
	NextDue(ctx context.Context) (at time.Time, ok bool, err error)
	// MarkSent records the delivery of notification id.
	MarkSent(ctx context.Context, id int64, at time.Time) error
	// MarkRetry records a failed attempt and when to try again, and
	// MarkFailed gives up, both under the claim made until held: a claim
	// that ran out and was taken by another instance is left to it.
	MarkRetry(ctx context.Context, id int64, held time.Time, attempts int, next time.Time, lastErr string) error
	MarkFailed(ctx context.Context, id int64, held time.Time, attempts int, lastErr string) error
	// Release gives claimed notifications back untried (breaker open,
	// shutdown): each only while its claim is still the one held.
	Release(ctx context.Context, claims ...Held) error
	Pending(ctx context.Context) (int64, error)
}

// Held is a claim on notification ID, made (or last renewed) until Until:
// what a claimer gives to clear it, so that it never clears another
// instance's later claim.
type Held struct {
	ID    int64
	Until time.Time
}
