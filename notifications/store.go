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
	Get(ctx context.Context, id int64) (Notification, error)
	// List returns the newest notifications first, of one status or all ("").
	List(ctx context.Context, status string, limit int) ([]Notification, error)

	// Claim leases the next pending notification due at now until now+lease
	// (ok false when none is due).
	Claim(ctx context.Context, now time.Time, lease time.Duration) (n Notification, ok bool, err error)
	// Renew extends the lease on notification id, while it is being sent.
	Renew(ctx context.Context, id int64, until time.Time) error
	// NextDue is when the next pending notification falls due (ok false: none).
	NextDue(ctx context.Context) (at time.Time, ok bool, err error)
	MarkSent(ctx context.Context, id int64, at time.Time) error
	// MarkRetry records a failed attempt and when to try again.
	MarkRetry(ctx context.Context, id int64, attempts int, next time.Time, lastErr string) error
	MarkFailed(ctx context.Context, id int64, attempts int, lastErr string) error
	// Release gives a claimed notification back untried (breaker open, shutdown).
	Release(ctx context.Context, id int64) error
	Pending(ctx context.Context) (int64, error)
}
