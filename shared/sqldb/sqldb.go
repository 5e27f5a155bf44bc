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
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"syndic/shared/config"
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

	// writeMu serialises SQLite write transactions in the process, so
	// writers queue on a mutex instead of sleeping in SQLite's busy handler.
	writeMu sync.Mutex
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
		dsn := sqliteDSN(p)
		if extra != "" {
			dsn += "&" + extra
		}
		db = &DB{sql: pool("sqlite", dsn, 8), Dialect: SQLite}
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		db = &DB{sql: pool("pgx", url, 16), Dialect: Postgres}
	default:
		return nil, fmt.Errorf("unsupported database URL %q: want sqlite:PATH or postgres://…", config.Redact(url))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.sql.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", db.Dialect, err)
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

func sqliteDSN(p string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: p}).EscapedPath() + "?" + q.Encode()
}

// Close closes the database, and with it every prepared statement, once
// no statement is being prepared any more.
func (db *DB) Close() error {
	db.stmts.prepping.Wait()
	if db.peers != nil {
		db.peers.stop()
	}
	return db.sql.Close()
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

// Micro converts t to the integer times stored in the database.
func Micro(t time.Time) int64 { return t.UnixMicro() }

// Time converts a stored integer time back, in UTC.
func Time(us int64) time.Time { return time.UnixMicro(us).UTC() }
