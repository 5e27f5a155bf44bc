package notifications

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/sqldb"
)

//go:embed migrations
var migrations embed.FS

// SQLStore is the Store on SQLite or PostgreSQL.
type SQLStore struct {
	db *sqldb.DB
}

// NewSQLStore migrates db and returns a Store on it.
func NewSQLStore(ctx context.Context, db *sqldb.DB) (*SQLStore, error) {
	if err := db.Migrate(ctx, migrations); err != nil {
		return nil, err
	}
	return &SQLStore{db: db}, nil
}

const columns = `id, idempotency_key, to_address, subject, body, calendar, status, attempts, last_error, next_attempt_at, created_at, updated_at, sent_at`

func scan(row sqldb.Scanner) (Notification, error) {
	var n Notification
	var next, created, updated int64
	var sent sql.NullInt64
	err := row.Scan(&n.ID, &n.IdempotencyKey, &n.To, &n.Subject, &n.Text, &n.Calendar, &n.Status, &n.Attempts, &n.LastError, &next, &created, &updated, &sent)
	if err != nil {
		return Notification{}, err
	}
	n.CreatedAt, n.UpdatedAt = sqldb.Time(created), sqldb.Time(updated)
	if n.Status == StatusPending {
		t := sqldb.Time(next)
		n.NextAttemptAt = &t
	}
	if sent.Valid {
		t := sqldb.Time(sent.Int64)
		n.SentAt = &t
	}
	return n, nil
}

// Accept stores req under key unless the key is taken.
func (s *SQLStore) Accept(ctx context.Context, key string, req Request) (Notification, bool, error) {
	return s.AcceptClaimed(ctx, key, req, time.Time{})
}

// AcceptClaimed is Accept, with a new notification claimed until until in
// the same transaction (unclaimed when until is zero).
func (s *SQLStore) AcceptClaimed(ctx context.Context, key string, req Request, until time.Time) (Notification, bool, error) {
	now := sqldb.Micro(time.Now())
	var lease int64
	if !until.IsZero() {
		lease = sqldb.Micro(until)
	}
	hash := req.Hash()
	var n Notification
	created := false
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		created = false
		var err error
		n, err = scan(tx.QueryRow(ctx, `INSERT INTO notifications (idempotency_key, request_hash, to_address, subject, body, calendar, next_attempt_at, created_at, updated_at, lease_until)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING RETURNING `+columns,
			key, hash, req.To, req.Subject, req.Text, req.Calendar, now, lease))
		switch {
		case err == nil:
			created = true
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("insert notification: %w", err)
		}
		var storedHash string
		if err := tx.QueryRow(ctx, `SELECT request_hash FROM notifications WHERE idempotency_key = $1`, key).Scan(&storedHash); err != nil {
			return fmt.Errorf("notification %q: %w", key, err)
		}
		if storedHash != hash {
			return fmt.Errorf("Idempotency-Key %q was used for a different request: %w", key, derrors.ErrUnprocessable)
		}
		n, err = scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM notifications WHERE idempotency_key = $1`, key))
		return err
	})
	return n, created, err
}

// Get returns notification id.
func (s *SQLStore) Get(ctx context.Context, id int64) (Notification, error) {
	return sqldb.One(ctx, s.db, scan, fmt.Sprintf("notification %d", id), `SELECT `+columns+` FROM notifications WHERE id = $1`, id)
}

// List returns the newest first.
func (s *SQLStore) List(ctx context.Context, status string, limit int) ([]Notification, error) {
	return s.Page(ctx, status, limit, 0)
}

// Page lists the notifications with an id below before (0: any), newest
// first: a list pages by the last id it showed, which stays right while
// new notifications arrive.
func (s *SQLStore) Page(ctx context.Context, status string, limit int, before int64) ([]Notification, error) {
	if limit <= 0 {
		limit = 100
	}
	if before <= 0 {
		before = 1 << 62
	}
	q := `SELECT ` + columns + ` FROM notifications WHERE id < $1`
	args := []any{before}
	if status != "" {
		q += ` AND status = $2`
		args = append(args, status)
	}
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args)+1)
	out, err := sqldb.All(ctx, s.db, scan, q, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list notifications: %w", err)
	}
	return out, nil
}

// Claim leases the next due notification (ok false when none is due, or
// when the one seen due was taken by another claim first).
func (s *SQLStore) Claim(ctx context.Context, now time.Time, lease time.Duration) (Notification, bool, error) {
	ns, err := s.ClaimDue(ctx, now, now.Add(lease), 1)
	if err != nil || len(ns) == 0 {
		return Notification{}, false, err
	}
	return ns[0], true, nil
}

// ClaimDue leases up to limit due notifications until until, in one
// transaction, oldest due first. It looks for them with a read first, so
// finding none writes nothing. The whole condition is checked again in each
// UPDATE, so two workers (or instances) never hold one row: under
// PostgreSQL's READ COMMITTED the read may see a row from before another
// worker claimed, sent and released it, and only the UPDATE's own WHERE is
// evaluated again on the row's newest version. A row claimed by someone
// else in between is left out.
func (s *SQLStore) ClaimDue(ctx context.Context, now, until time.Time, limit int) ([]Notification, error) {
	t := sqldb.Micro(now)
	ids, err := sqldb.All(ctx, s.db, scanID, `SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 AND lease_until <= $1 ORDER BY next_attempt_at, id LIMIT $2`, t, limit)
	if err != nil || len(ids) == 0 {
		return nil, wrap("claim notifications", err)
	}
	var out []Notification
	err = s.db.Write(ctx, func(tx *sqldb.Tx) error {
		out = out[:0]
		for _, id := range ids {
			n, err := scan(tx.QueryRow(ctx, `UPDATE notifications SET lease_until = $1
				WHERE id = $2 AND status = 'pending' AND next_attempt_at <= $3 AND lease_until <= $3 RETURNING `+columns, sqldb.Micro(until), id, t))
			switch {
			case err == nil:
				out = append(out, n)
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	return out, nil
}

// Reclaim renews the claim on notification id until until if it is still
// the one that was made until held, or if that has run out and nobody has
// claimed the notification since (ok false: someone has, or it is done).
func (s *SQLStore) Reclaim(ctx context.Context, id int64, held, now, until time.Time) (Notification, bool, error) {
	var n Notification
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		var err error
		n, err = scan(tx.QueryRow(ctx, `UPDATE notifications SET lease_until = $1
			WHERE id = $2 AND status = 'pending' AND (lease_until = $3 OR lease_until <= $4) RETURNING `+columns,
			sqldb.Micro(until), id, sqldb.Micro(held), sqldb.Micro(now)))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return Notification{}, false, nil
	}
	if err != nil {
		return Notification{}, false, fmt.Errorf("reclaim notification %d: %w", id, err)
	}
	return n, true, nil
}

func scanID(row sqldb.Scanner) (int64, error) {
	var id int64
	err := row.Scan(&id)
	return id, err
}

// wrap adds what to a non-nil err.
func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// NextDue is when the next pending notification falls due.
func (s *SQLStore) NextDue(ctx context.Context) (time.Time, bool, error) {
	later := "max" // SQLite's two-argument max is PostgreSQL's greatest
	if s.db.Dialect == sqldb.Postgres {
		later = "greatest"
	}
	var at sql.NullInt64
	err := s.db.QueryRow(ctx, `SELECT min(`+later+`(next_attempt_at, lease_until)) FROM notifications WHERE status = 'pending'`).Scan(&at)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", err)
	}
	if !at.Valid {
		return time.Time{}, false, nil
	}
	return sqldb.Time(at.Int64), true, nil
}

// exec runs q as a write of its own.
func (s *SQLStore) exec(ctx context.Context, what, q string, args ...any) error {
	_, err := s.db.Exec(ctx, q, args...)
	return wrap(what, err)
}

// MarkSent records the delivery of notification id.
func (s *SQLStore) MarkSent(ctx context.Context, id int64, at time.Time) error {
	return s.exec(ctx, "mark sent", `UPDATE notifications SET status = 'sent', attempts = attempts + 1, last_error = '', sent_at = $1, updated_at = $1, lease_until = 0 WHERE id = $2`,
		sqldb.Micro(at), id)
}

// MarkRetry records a failed attempt under the claim made until held.
func (s *SQLStore) MarkRetry(ctx context.Context, id int64, held time.Time, attempts int, next time.Time, lastErr string) error {
	return s.exec(ctx, "mark retry", `UPDATE notifications SET attempts = $1, next_attempt_at = $2, last_error = $3, updated_at = $4, lease_until = 0
		WHERE id = $5 AND status = 'pending' AND lease_until = $6`,
		attempts, sqldb.Micro(next), lastErr, sqldb.Micro(time.Now()), id, sqldb.Micro(held))
}

// MarkFailed gives up on a notification, under the claim made until held.
func (s *SQLStore) MarkFailed(ctx context.Context, id int64, held time.Time, attempts int, lastErr string) error {
	return s.exec(ctx, "mark failed", `UPDATE notifications SET status = 'failed', attempts = $1, last_error = $2, updated_at = $3, lease_until = 0
		WHERE id = $4 AND status = 'pending' AND lease_until = $5`,
		attempts, lastErr, sqldb.Micro(time.Now()), id, sqldb.Micro(held))
}

// Renew extends the claim made until held on a notification being sent.
func (s *SQLStore) Renew(ctx context.Context, id int64, held, until time.Time) (bool, error) {
	n, err := s.db.Exec(ctx, `UPDATE notifications SET lease_until = $1 WHERE id = $2 AND status = 'pending' AND lease_until = $3`,
		sqldb.Micro(until), id, sqldb.Micro(held))
	return n == 1, wrap("renew lease", err)
}

// Release gives claimed notifications back untried, in one transaction,
// each only while its claim is still the one held.
func (s *SQLStore) Release(ctx context.Context, claims ...Held) error {
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		for _, c := range claims {
			if _, err := tx.Exec(ctx, `UPDATE notifications SET lease_until = 0 WHERE id = $1 AND status = 'pending' AND lease_until = $2`,
				c.ID, sqldb.Micro(c.Until)); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap("release", err)
}

// Pending counts the notifications not yet sent or failed.
func (s *SQLStore) Pending(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM notifications WHERE status = 'pending'`).Scan(&n)
	return n, err
}
