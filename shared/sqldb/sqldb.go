// Package sqldb opens the database a service keeps its state in — SQLite
// (modernc, WAL, no cgo) by default, PostgreSQL (pgx) when DATABASE_URL names
// one — applies embedded migrations, runs write transactions and tells
// waiters when one commits.
//
// The SQL the services write is shared by both dialects: numbered
// placeholders ($1, $2 …), RETURNING, integer times (Unix microseconds).
// The schema is shared too: a migration writes {{id}}, {{int}}, {{bool}} and
// {{false}} where the dialects spell a type differently (see Migrate).
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"syndic/shared/config"
	"syndic/shared/metrics"
)

// Dialect names a database family; it is also the migrations folder name.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a service's database, behind one door: writes go through Write,
// which runs a function in one transaction (serialised in the process on
// SQLite, where there is one writer at a time) and then tells Committed's
// waiters; reads go through Query and QueryRow. Statements are prepared
// once and reused. Nothing outside this package holds the *sql.DB.
type DB struct {
	sql *sql.DB
	// Dialect is the database family; stores read it for the rare SQL that
	// differs between the two.
	Dialect Dialect

	// queue feeds the one committer (group.go): writes queue in the
	// process, not in SQLite's busy handler or on PostgreSQL's row locks.
	queue   queue
	closeMu sync.RWMutex
	closed  bool
	stats   struct{ writes, commits atomic.Int64 }
	commits Broadcast
	peers   *peers // PostgreSQL: other instances' commits
	stmts   statements

	mu   sync.Mutex
	want int
}

// Option adjusts Open.
type Option func(*options)

type options struct{ log *slog.Logger }

// WithLogger is where the database reports what it recovers from by itself
// (a lost LISTEN connection); without it, nowhere.
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// Open opens the database named by url: "sqlite:PATH" (the folder is
// created; "?…" after the path adds driver parameters) or "postgres://…" /
// "postgresql://…". It pings before returning. On PostgreSQL, Committed
// also fires for commits by other instances on the same schema (LISTEN/NOTIFY).
func Open(ctx context.Context, url string, opts ...Option) (*DB, error) {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	var db *DB
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		p := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		p, extra, _ := strings.Cut(p, "?") // extra: more driver parameters, e.g. _pragma=query_only(1)
		if p == "" {
			return nil, errors.New("sqlite: empty path")
		}
		if dir := filepath.Dir(p); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("sqlite: %w", err)
			}
		}
		dsn, err := sqliteDSN(p, extra)
		if err != nil {
			return nil, err
		}
		db = &DB{sql: pool("sqlite", dsn, 8), Dialect: SQLite}
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		db = &DB{sql: pool("pgx", url, 16), Dialect: Postgres}
	default:
		return nil, fmt.Errorf("unsupported database URL %q: want sqlite:PATH or postgres://…", config.Redact(url))
	}
	startCommitter(db)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.sql.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", db.Dialect, err)
	}
	if d, err := db.durability(pctx); err == nil {
		o.log.Info("database opened", "dialect", db.Dialect, "durability", d)
	}
	if db.Dialect == Postgres {
		p, err := startPeers(db, url, o.log)
		if err != nil {
			db.Close()
			return nil, err
		}
		db.peers = p
	}
	return db, nil
}

// pool is a connection pool of driver on dsn with at most open
// connections. sql.Open only checks its arguments, which are ours.
func pool(driver, dsn string, open int) *sql.DB {
	sdb, _ := sql.Open(driver, dsn)
	sdb.SetMaxOpenConns(open)
	sdb.SetMaxIdleConns(4)
	sdb.SetConnMaxIdleTime(5 * time.Minute)
	return sdb
}

// sqliteDSN is the modernc DSN for the file at p with extra, the URL's own
// parameters: a _pragma there replaces the default pragma of that name.
//
// The defaults: synchronous(FULL) in WAL mode syncs the WAL at every
// commit, so a write acknowledged is on disk and survives power loss;
// synchronous(NORMAL) in the URL trades that for speed (a crash of the
// machine, not of the process, may lose the last commits).
func sqliteDSN(p, extra string) (string, error) {
	defaults := []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"}
	own, err := url.ParseQuery(extra)
	if err != nil {
		return "", fmt.Errorf("sqlite: parameters %q: %w", extra, err)
	}
	given := map[string]bool{}
	for _, pr := range own["_pragma"] {
		name, _, _ := strings.Cut(pr, "(")
		given[strings.ToLower(strings.TrimSpace(name))] = true
	}
	q := url.Values{}
	for _, pr := range defaults {
		if name, _, _ := strings.Cut(pr, "("); !given[name] {
			q.Add("_pragma", pr)
		}
	}
	q.Set("_txlock", "immediate")
	for k, vs := range own {
		if k != "_pragma" {
			q.Del(k)
		}
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	return "file:" + (&url.URL{Path: p}).EscapedPath() + "?" + q.Encode(), nil
}

// Close closes the database, and with it every prepared statement, once
// no statement is being prepared any more.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if !db.closed {
		db.closed = true
		close(db.queue.in)
	}
	db.closeMu.Unlock()
	<-db.queue.done
	db.stmts.prepping.Wait()
	if db.peers != nil {
		db.peers.stop()
	}
	return db.sql.Close()
}

// Stats counts the writes committed and the commits that held them: their
// ratio is the mean batch of group commit.
type Stats struct{ Writes, Commits int64 }

// Stats returns the counts since Open.
func (db *DB) Stats() Stats {
	return Stats{Writes: db.stats.writes.Load(), Commits: db.stats.commits.Load()}
}

// durability says what a commit waits for: SQLite's synchronous pragma
// (FULL: the WAL is synced at every commit) or PostgreSQL's
// synchronous_commit (on: the WAL is flushed before a commit returns).
func (db *DB) durability(ctx context.Context) (string, error) {
	if db.Dialect == Postgres {
		var v string
		err := db.sql.QueryRowContext(ctx, `SHOW synchronous_commit`).Scan(&v)
		return "synchronous_commit=" + v, err
	}
	var v int
	err := db.sql.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&v)
	names := []string{"OFF", "NORMAL", "FULL", "EXTRA"}
	if err != nil || v < 0 || v >= len(names) {
		return "", fmt.Errorf("synchronous = %d: %v", v, err)
	}
	return "synchronous=" + names[v], nil
}

// Observe registers the database's counts with m: writes and commits
// (their ratio is the mean group-commit batch).
func (db *DB) Observe(m *metrics.Set) {
	m.CounterFunc("db_writes", "Write transactions committed (Write calls that succeeded).", func() int64 { return db.Stats().Writes })
	m.CounterFunc("db_commits", "Database commits; several writes share one in a group commit.", func() int64 { return db.Stats().Commits })
}

// Ready reports whether the database answers and every migration is applied.
func (db *DB) Ready(ctx context.Context) error {
	db.mu.Lock()
	want := db.want
	db.mu.Unlock()
	if want == 0 {
		return errors.New("migrations not applied")
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if n < want {
		return fmt.Errorf("database: %d of %d migrations applied", n, want)
	}
	return nil
}

// LikeContains is the LIKE pattern, written ESCAPE '\', that matches a
// lower-cased text holding s in any case: compare lower(column) with it.
func LikeContains(s string) string {
	return "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(s)) + "%"
}

// Micro converts t to the integer times stored in the database.
func Micro(t time.Time) int64 { return t.UnixMicro() }

// Time converts a stored integer time back, in UTC.
func Time(us int64) time.Time { return time.UnixMicro(us).UTC() }
