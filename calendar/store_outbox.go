package calendar

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"syndic/shared/sqldb"
)

// writeOutbox inserts entries in tx, claimed until until (zero: not
// claimed), and fills in what the database gave them.
func writeOutbox(ctx context.Context, tx *sqldb.Tx, entries []OutboxEntry, now, until time.Time) error {
	t := sqldb.Micro(now)
	var lease int64
	if !until.IsZero() {
		lease = sqldb.Micro(until)
	}
	for i, e := range entries {
		err := tx.QueryRow(ctx, `INSERT INTO outbox (appointment_id, contact_id, kind, to_address, subject, body, calendar, idempotency_key, next_attempt_at, created_at, updated_at, lease_until)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $10) RETURNING id`,
			e.AppointmentID, e.ContactID, e.Kind, e.To, e.Subject, e.Text, e.Calendar, e.Key, t, lease).Scan(&entries[i].ID)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		entries[i].Status, entries[i].NextAttemptAt = "pending", sqldb.Time(t)
	}
	return nil
}

const outboxColumns = `id, appointment_id, contact_id, kind, to_address, subject, body, calendar, idempotency_key, status, attempts, last_error, next_attempt_at`

func scanOutbox(row sqldb.Scanner) (OutboxEntry, error) {
	var e OutboxEntry
	var next int64
	err := row.Scan(&e.ID, &e.AppointmentID, &e.ContactID, &e.Kind, &e.To, &e.Subject, &e.Text, &e.Calendar, &e.Key, &e.Status, &e.Attempts, &e.LastError, &next)
	e.NextAttemptAt = sqldb.Time(next)
	return e, err
}

func (s *SQLStore) queryOutbox(ctx context.Context, where string, args ...any) ([]OutboxEntry, error) {
	out, err := sqldb.All(ctx, s.db, scanOutbox, `SELECT `+outboxColumns+` FROM outbox WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return out, nil
}

// Notifications lists the outbox entries of appointment id, oldest first.
func (s *SQLStore) Notifications(ctx context.Context, id int64) ([]OutboxEntry, error) {
	return s.queryOutbox(ctx, `appointment_id = $1 ORDER BY id`, id)
}

// DueOutbox returns the ids of pending entries due at now and claimed by
// no replica, oldest first.
func (s *SQLStore) DueOutbox(ctx context.Context, now time.Time, limit int) ([]int64, error) {
	ids, err := sqldb.All(ctx, s.db, scanID, `SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 AND lease_until <= $1 ORDER BY next_attempt_at, id LIMIT $2`, sqldb.Micro(now), limit)
	if err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	return ids, nil
}

func scanID(row sqldb.Scanner) (int64, error) {
	var id int64
	err := row.Scan(&id)
	return id, err
}

// ClaimOutbox claims entry id until now+lease if it is pending, due and
// unclaimed — or still held by the claim made until held (zero: none) — and
// returns it; ok is false when it is not (another replica has it, or it is
// done). MarkOutbox ends the claim.
func (s *SQLStore) ClaimOutbox(ctx context.Context, id int64, now time.Time, lease time.Duration, held time.Time) (e OutboxEntry, ok bool, err error) {
	err = s.db.Write(ctx, func(tx *sqldb.Tx) error {
		e, err = claimOutbox(ctx, tx, id, now, now.Add(lease), held)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return OutboxEntry{}, false, nil
	}
	if err != nil {
		return OutboxEntry{}, false, fmt.Errorf("claim outbox %d: %w", id, err)
	}
	return e, true, nil
}

// claimOutbox is ClaimOutbox in tx; sql.ErrNoRows when it cannot be had.
func claimOutbox(ctx context.Context, tx *sqldb.Tx, id int64, now, until, held time.Time) (OutboxEntry, error) {
	h := int64(-1) // no claim held: matches no lease
	if !held.IsZero() {
		h = sqldb.Micro(held)
	}
	return scanOutbox(tx.QueryRow(ctx, `UPDATE outbox SET lease_until = $1
		WHERE id = $2 AND status = 'pending' AND (next_attempt_at <= $3 AND lease_until <= $3 OR lease_until = $4) RETURNING `+outboxColumns,
		sqldb.Micro(until), id, sqldb.Micro(now), h))
}

// ClaimOutboxAll claims the entries ids that are pending, due and
// unclaimed until until, in one transaction, and returns those it got.
func (s *SQLStore) ClaimOutboxAll(ctx context.Context, ids []int64, now, until time.Time) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		out = out[:0]
		for _, id := range ids {
			e, err := claimOutbox(ctx, tx, id, now, until, time.Time{})
			switch {
			case err == nil:
				out = append(out, e)
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim outbox: %w", err)
	}
	return out, nil
}

// ReleaseOutbox gives back untried the entries ids still held by claims
// made until held[i], in one transaction.
func (s *SQLStore) ReleaseOutbox(ctx context.Context, ids []int64, held []time.Time) error {
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		for i, id := range ids {
			if _, err := tx.Exec(ctx, `UPDATE outbox SET lease_until = 0 WHERE id = $1 AND status = 'pending' AND lease_until = $2`, id, sqldb.Micro(held[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("release outbox: %w", err)
	}
	return nil
}

// RenewOutbox extends the claim made until held on entry id until until;
// false when that claim is no longer the entry's (it ran out and another
// replica took it, or the entry is done).
func (s *SQLStore) RenewOutbox(ctx context.Context, id int64, held, until time.Time) (bool, error) {
	n, err := s.db.Exec(ctx, `UPDATE outbox SET lease_until = $1 WHERE id = $2 AND status = 'pending' AND lease_until = $3`,
		sqldb.Micro(until), id, sqldb.Micro(held))
	if err != nil {
		return false, fmt.Errorf("renew outbox claim %d: %w", id, err)
	}
	return n == 1, nil
}

// PendingOutbox counts the entries not yet delivered or failed.
func (s *SQLStore) PendingOutbox(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE status = 'pending'`).Scan(&n)
	return n, err
}

// MarkOutbox records a failed call made under the claim made until held,
// and ends the claim: status (failed, or pending again), attempts so far,
// the last error and, when pending, the next attempt (ReleaseOutbox gives
// an entry back untried). Nothing is recorded once the claim is no longer
// held: a replica whose claim ran out and was taken must not overwrite the
// record of the one that has it.
func (s *SQLStore) MarkOutbox(ctx context.Context, id int64, held time.Time, status string, attempts int, lastErr string, next time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE outbox SET status = $1, attempts = $2, last_error = $3, next_attempt_at = $4, updated_at = $5, lease_until = 0
		WHERE id = $6 AND status = 'pending' AND lease_until = $7`,
		status, attempts, lastErr, sqldb.Micro(next), sqldb.Micro(time.Now()), id, sqldb.Micro(held))
	if err != nil {
		return fmt.Errorf("outbox %d: %w", id, err)
	}
	return nil
}

// MarkOutboxSent records that notifications accepted entry id, after
// attempts calls, and ends the claim, whoever holds it: the request is
// there. The attempts recorded never go down: a replica whose claim ran
// out and was taken may count fewer calls than the one that took it.
func (s *SQLStore) MarkOutboxSent(ctx context.Context, id int64, attempts int, at time.Time) error {
	_, err := s.db.Exec(ctx, `UPDATE outbox SET status = 'sent', attempts = CASE WHEN attempts > $1 THEN attempts ELSE $1 END, last_error = '', next_attempt_at = $2, updated_at = $2, lease_until = 0
		WHERE id = $3 AND status = 'pending'`, attempts, sqldb.Micro(at), id)
	if err != nil {
		return fmt.Errorf("outbox %d sent: %w", id, err)
	}
	return nil
}
