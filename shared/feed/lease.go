package feed

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"syndic/shared/retry"
	"syndic/shared/sqldb"
)

//go:embed migrations
var migrations embed.FS

// Migrations returns the schema a follower needs (feed_checkpoints and
// feed_leases), for
// the service's sqldb.DB.Migrate beside its own.
func Migrations() fs.FS { return migrations }

// ErrLeaseLost says another instance holds the follower lease now: this
// one must not apply anything more.
var ErrLeaseLost = errors.New("feed: the follower lease is held by another instance")

// lease is one instance's hold on the right to follow a feed: a row in
// feed_leases with an expiry and a fencing token. At most one instance
// holds it at a time; the token grows at every change of holder, and every
// commit of events checks it inside its transaction (see fence), so a
// holder that lost the lease — paused, partitioned, or simply slow — can
// never commit a checkpoint after another took over.
type lease struct {
	db     *sqldb.DB
	name   string
	holder string
	ttl    time.Duration
	token  int64 // while held; 0 otherwise
}

// acquire takes the lease when it is free, expired, or already this
// holder's (a restart with the same FOLLOWER_ID), and reports whether it
// did. Taking it over bumps the token.
func (l *lease) acquire(ctx context.Context) (bool, error) {
	now := time.Now()
	var token int64
	err := l.db.Write(ctx, func(tx *sqldb.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO feed_leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = feed_leases.token + 1, expires_at = excluded.expires_at
			WHERE feed_leases.expires_at < $4 OR feed_leases.holder = excluded.holder
			RETURNING token`, l.name, l.holder, now.Add(l.ttl).UnixMicro(), now.UnixMicro()).Scan(&token)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("follower lease: %w", err)
	}
	l.token = token
	return true, nil
}

// renew extends the lease; ErrLeaseLost when another instance holds it.
func (l *lease) renew(ctx context.Context) error {
	return l.db.Write(ctx, func(tx *sqldb.Tx) error { return l.fence(ctx, tx) })
}

// fence checks, inside tx, that this instance still holds the lease, and
// extends it. The UPDATE locks the lease row until tx ends, so a takeover
// waits for tx and then finds its commit.
func (l *lease) fence(ctx context.Context, tx *sqldb.Tx) error {
	res, err := tx.Exec(ctx, `UPDATE feed_leases SET expires_at = $1 WHERE name = $2 AND holder = $3 AND token = $4`,
		time.Now().Add(l.ttl).UnixMicro(), l.name, l.holder, l.token)
	if err != nil {
		return fmt.Errorf("follower lease: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrLeaseLost
	}
	return nil
}

// release gives the lease up at once (on shutdown), so a standby takes
// over without waiting for it to expire.
func (l *lease) release(ctx context.Context) error {
	_, err := l.db.Exec(ctx, `UPDATE feed_leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND token = $3`, l.name, l.holder, l.token)
	l.token = 0
	return err
}

// leaseHolder is who holds the lease of a feed, as far as the database says.
type leaseHolder struct {
	Holder    string    `json:"holder"`
	ExpiresAt time.Time `json:"expires_at"`
	Token     int64     `json:"token"`
}

func (l *lease) current(ctx context.Context) (leaseHolder, error) {
	var h leaseHolder
	var exp int64
	err := l.db.QueryRow(ctx, `SELECT holder, expires_at, token FROM feed_leases WHERE name = $1`, l.name).Scan(&h.Holder, &exp, &h.Token)
	if errors.Is(err, sql.ErrNoRows) {
		return leaseHolder{}, nil
	}
	if err != nil {
		return leaseHolder{}, fmt.Errorf("follower lease: %w", err)
	}
	h.ExpiresAt = time.UnixMicro(exp).UTC()
	return h, nil
}

// instanceID names this process in the lease: host, process id, and a
// random suffix (a process restarted under the same pid is another one).
func instanceID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", cmp.Or(host, "host"), os.Getpid(), hex.EncodeToString(b[:]))
}

// standBy waits as a standby until this instance takes the lease (true) or
// ctx is done (false). It looks again whenever the database says something
// committed (on PostgreSQL, also in another instance: a release is seen at
// once), when the holder's lease would expire, and every second.
func (f *Follower) standBy(ctx context.Context) bool {
	for ctx.Err() == nil {
		committed := f.cfg.DB.Committed()
		h, err := f.lease.current(ctx)
		if err == nil && (h.Holder == "" || h.Holder == f.cfg.Instance || !h.ExpiresAt.After(time.Now())) {
			var ok bool
			if ok, err = f.lease.acquire(ctx); ok {
				return true
			}
			h, _ = f.lease.current(ctx)
		}
		cp, cpErr := f.Checkpoint(ctx)
		f.update(func(s *Status) {
			s.Follower, s.LeaseHolder, s.LeaseExpiresAt = "standby", h.Holder, h.ExpiresAt
			if cpErr == nil { // what the active instance has applied
				s.CheckpointSeq, s.Page = cp.Seq, cp.Page
				s.HeadSeq = max(s.HeadSeq, cp.Seq)
			}
		})
		if err != nil && ctx.Err() == nil {
			f.log.Warn("follower lease", "err", err)
		}
		wait := time.Second
		if until := time.Until(h.ExpiresAt); until > 0 && until < wait {
			wait = until + time.Millisecond
		}
		t := time.NewTimer(wait)
		select {
		case <-committed:
			retry.Sleep(ctx, 100*time.Millisecond) // the active instance commits often: look at most ten times a second
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	return false
}

// lead follows the feed while the lease is held: it renews the lease three
// times per LeaseTTL, stops applying as soon as the lease is lost, and on
// shutdown gives it up so a standby takes over at once.
func (f *Follower) lead(ctx context.Context) {
	cp, err := f.Checkpoint(ctx) // the previous holder may have moved it
	if err != nil {
		f.log.Warn("follower checkpoint", "err", err)
		return
	}
	f.restart(cp)
	f.update(func(s *Status) {
		s.Follower, s.LeaseHolder, s.LeaseExpiresAt = "active", f.cfg.Instance, time.Now().Add(f.cfg.LeaseTTL)
	})
	f.log.Info("following feed: this instance holds the follower lease", "instance", f.cfg.Instance, "checkpoint", cp.Seq)
	lctx, lost := context.WithCancel(ctx)
	defer lost()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer lost()
		renewed := time.Now()
		for {
			retry.Sleep(lctx, f.cfg.LeaseTTL/3)
			if lctx.Err() != nil {
				return
			}
			switch err := f.lease.renew(lctx); {
			case err == nil:
				renewed = time.Now()
				f.update(func(s *Status) { s.LeaseExpiresAt = renewed.Add(f.cfg.LeaseTTL) })
			case errors.Is(err, ErrLeaseLost):
				f.log.Warn("follower lease taken over: standing by", "instance", f.cfg.Instance)
				return
			case time.Since(renewed) > f.cfg.LeaseTTL:
				f.log.Warn("follower lease could not be renewed in time: standing by", "err", err)
				return
			default:
				f.log.Warn("renew follower lease", "err", err)
			}
		}
	})
	f.walk(lctx)
	lost()
	wg.Wait()
	f.drainAhead()
	f.update(func(s *Status) { s.Follower = "standby" })
	if ctx.Err() != nil { // shutting down: hand over now
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := f.lease.release(rctx); err != nil {
			f.log.Warn("release follower lease", "err", err)
		} else {
			f.log.Info("follower lease released")
		}
	}
}
