package sqldb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"syndic/shared/retry"
)

// commitChannel is the PostgreSQL NOTIFY channel on which the instances
// sharing a schema tell each other that a write committed.
func commitChannel(schema string) string { return "syndic_commits_" + schema }

// peers tells the other instances on one PostgreSQL schema about this
// instance's commits, and this instance about theirs: after a commit, a
// NOTIFY (coalesced: many commits in a burst send one); a connection of its
// own LISTENs and closes Committed's channel for every notification from
// another instance. While the listening connection is down, waiters fall
// back on their own rechecks; when it is back, Committed fires once, since
// commits may have been missed.
type peers struct {
	db      *DB
	url     string
	channel string
	self    string // this instance's payload, so its own notifications are skipped
	log     *slog.Logger

	kick   chan struct{} // a commit to announce
	out    *pgx.Conn     // announce's own connection, asynchronous commits (see notify)
	quit   chan struct{} // closed by stop: announce what is pending, then end
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once // stop runs once: a DB may be closed twice
}

func startPeers(db *DB, url string, log *slog.Logger) (*peers, error) {
	var schema string
	if err := db.sql.QueryRowContext(context.Background(), `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, fmt.Errorf("postgres: current schema: %w", err)
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	p := &peers{db: db, url: url, channel: commitChannel(schema), self: hex.EncodeToString(id[:]),
		log: log, kick: make(chan struct{}, 1), quit: make(chan struct{}), cancel: cancel}
	p.wg.Go(func() { p.listen(ctx) })
	p.wg.Go(p.announce)
	return p, nil
}

// committed asks for a NOTIFY after a commit; it never blocks.
func (p *peers) committed() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// announce sends a NOTIFY for each burst of commits until stop, and then
// one more if a commit is still unannounced: the last commits of a replica
// shutting down (a released lease, say) reach the others at once.
func (p *peers) announce() {
	for {
		select {
		case <-p.kick:
			p.notify()
		case <-p.quit:
			select {
			case <-p.kick:
				p.notify()
			default:
			}
			if p.out != nil {
				p.out.Close(context.Background())
			}
			return
		}
	}
}

// notify sends one NOTIFY. A NOTIFY is a transaction of its own, and a
// durable commit would wait for a WAL flush: its connection commits with
// synchronous_commit off instead (a lost notification costs nothing but
// its wake-up: waiters recheck), so announcing takes no fsync from the
// writes it announces (contacts, two replicas behind HAProxy, 8 writers:
// 1,118–1,147 creates/s with the durable NOTIFY, against 1,465–1,625 with
// none at all).
func (p *peers) notify() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if p.out == nil {
		cfg, err := pgx.ParseConfig(p.url)
		if err != nil {
			p.log.Warn("notify other instances of a commit", "err", err)
			return
		}
		cfg.RuntimeParams["synchronous_commit"] = "off"
		if p.out, err = pgx.ConnectConfig(ctx, cfg); err != nil {
			p.out = nil
			p.log.Warn("notify other instances of a commit", "err", err)
			return
		}
	}
	if _, err := p.out.Exec(ctx, `SELECT pg_notify($1, $2)`, p.channel, p.self); err != nil {
		p.log.Warn("notify other instances of a commit", "err", err)
		p.out.Close(ctx)
		p.out = nil // a new connection for the next one
	}
}

func (p *peers) listen(ctx context.Context) {
	backoff := retry.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second}
	for failures := 0; ctx.Err() == nil; {
		err := p.session(ctx, func() { failures = 0 })
		if ctx.Err() != nil {
			return
		}
		failures++
		p.log.Warn("listening for other instances' commits", "err", err)
		retry.Sleep(ctx, backoff.Wait(failures))
	}
}

// session listens on one connection until it fails. ready is called once
// LISTEN is in place.
func (p *peers) session(ctx context.Context, ready func()) error {
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{p.channel}.Sanitize()); err != nil {
		return err
	}
	ready()
	p.db.commits.Notify() // anything committed while we were not listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload != p.self {
			p.db.commits.Notify()
		}
	}
}

func (p *peers) stop() {
	p.once.Do(func() {
		close(p.quit)
		p.cancel()
		p.wg.Wait()
	})
}
