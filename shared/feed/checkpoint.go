package feed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/sqldb"
)

// Checkpoint is the last applied seq and the page it came from.
type Checkpoint struct {
	Seq  int64  `json:"seq"`
	Page string `json:"page"`
}

// Checkpoint reads the stored checkpoint; zero when there is none.
func (f *Follower) Checkpoint(ctx context.Context) (Checkpoint, error) {
	cp, err := sqldb.One(ctx, f.cfg.DB, func(row sqldb.Scanner) (cp Checkpoint, err error) {
		return cp, row.Scan(&cp.Seq, &cp.Page)
	}, "feed checkpoint "+f.cfg.Name, `SELECT seq, page FROM feed_checkpoints WHERE name = $1`, f.cfg.Name)
	if errors.Is(err, derrors.ErrNotFound) {
		return Checkpoint{}, nil
	}
	return cp, err
}

// ErrBackwards says a checkpoint write would have moved it back.
var ErrBackwards = errors.New("feed: the stored checkpoint is already at or past this seq")

// commit applies events and the checkpoint in one transaction. On failure
// it returns how many events preceded the failing one.
func (f *Follower) commit(ctx context.Context, events []Event, page string) (int, error) {
	start := time.Now()
	cp := Checkpoint{Seq: events[len(events)-1].Seq, Page: page}
	failed := 0
	err := f.cfg.DB.Write(ctx, func(tx *sqldb.Tx) error {
		if err := f.lease.fence(ctx, tx); err != nil {
			return err
		}
		for i, e := range events {
			if err := f.cfg.Apply(ctx, tx, e); err != nil {
				failed = i
				f.update(func(s *Status) { s.FailingSeq = e.Seq })
				return fmt.Errorf("apply seq %d (%s): %w", e.Seq, e.Type, err)
			}
		}
		if err := f.saveCheckpoint(ctx, tx, cp); err != nil {
			failed = len(events)
			return err
		}
		return nil
	})
	if err != nil {
		return failed, err
	}
	f.cp = cp
	f.mApply.UpdateSince(start)
	f.mApplied.Inc(int64(len(events)))
	f.update(func(s *Status) {
		s.CheckpointSeq, s.Page, s.LastApplied, s.FailingSeq = cp.Seq, cp.Page, time.Now().UTC(), 0
		s.HeadSeq = max(s.HeadSeq, cp.Seq)
	})
	if f.cfg.OnApplied != nil {
		f.cfg.OnApplied(cp)
	}
	return len(events), nil
}

// saveCheckpoint writes cp inside tx. The checkpoint only moves forward:
// a write that would take it back (it cannot happen under the lease) fails
// with ErrBackwards instead.
func (f *Follower) saveCheckpoint(ctx context.Context, tx *sqldb.Tx, cp Checkpoint) error {
	res, err := tx.Exec(ctx, `INSERT INTO feed_checkpoints (name, seq, page, updated_at, lease_token) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, page = excluded.page, updated_at = excluded.updated_at, lease_token = excluded.lease_token
		WHERE feed_checkpoints.seq < excluded.seq`,
		f.cfg.Name, cp.Seq, cp.Page, time.Now().UnixMicro(), f.lease.token)
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("save checkpoint %d: %w", cp.Seq, ErrBackwards)
	}
	return nil
}
