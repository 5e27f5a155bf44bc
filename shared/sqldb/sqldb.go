// Package sqldb opens the database a service keeps its state in — SQLite
// (modernc, WAL, no cgo) by default, PostgreSQL (pgx) when DATABASE_URL names
// one — applies embedded migrations, and runs write transactions.
//
// The SQL the services write is shared by both dialects: numbered
// placeholders ($1, $2 …), RETURNING, integer times (Unix microseconds).
// Only the schema differs, so migrations live in one folder per dialect.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
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

// DB is a database handle that knows its dialect and serialises write
// transactions where the database needs it.
type DB struct {
	*sql.DB
	Dialect Dialect

	// writeMu serialises SQLite write transactions in the process, so
	// writers queue on a mutex instead of sleeping in SQLite's busy handler.
	writeMu sync.Mutex

	mu   sync.Mutex
	want int
}

// Open opens the database named by url: "sqlite:PATH" (the folder is
// created; "?…" after the path adds driver parameters) or "postgres://…" /
// "postgresql://…". It pings before returning.
func Open(ctx context.Context, url string) (*DB, error) {
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
		sdb, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		sdb.SetMaxOpenConns(8)
		sdb.SetMaxIdleConns(4)
		sdb.SetConnMaxIdleTime(5 * time.Minute)
		db = &DB{DB: sdb, Dialect: SQLite}
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		sdb, err := sql.Open("pgx", url)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		sdb.SetMaxOpenConns(16)
		sdb.SetMaxIdleConns(4)
		sdb.SetConnMaxIdleTime(5 * time.Minute)
		db = &DB{DB: sdb, Dialect: Postgres}
	default:
		return nil, fmt.Errorf("unsupported database URL %q: want sqlite:PATH or postgres://…", config.Redact(url))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", db.Dialect, err)
	}
	return db, nil
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

// Tx runs fn in a transaction and commits when it returns nil; otherwise,
// or on panic, it rolls back and nothing fn wrote remains. An error that
// says the database can't take writes now (read-only, disk full,
// unreachable) wraps httpx.ErrUnavailable: a 503 with the reason.
func (db *DB) Tx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	if db.Dialect == SQLite {
		db.writeMu.Lock()
		defer db.writeMu.Unlock()
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("begin: %w", err))
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
		if err != nil {
			tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return classify(err)
	}
	if err := tx.Commit(); err != nil {
		return classify(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// Migrate applies, in name order, the *.sql files of fsys's folder named
// after the dialect that are not yet recorded in schema_migrations, each in
// its own transaction. Several instances may start at once on PostgreSQL:
// an advisory lock lets one apply each migration. A database that already
// has every migration is only read, so a service can start on a read-only
// one (and answer its writes 503).
func (db *DB) Migrate(ctx context.Context, fsys fs.FS) error {
	dir := string(db.Dialect)
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	applied, err := db.applied(ctx)
	if err != nil { // no table yet
		if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("migrations table: %w", err)
		}
	}
	for _, name := range names {
		if applied[name] {
			continue
		}
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
		err = db.Tx(ctx, func(tx *sql.Tx) error {
			if db.Dialect == Postgres {
				if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7349122)`); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = $1`, name).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)`, name, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	db.mu.Lock()
	db.want = len(names)
	db.mu.Unlock()
	return nil
}

// applied returns the names recorded in schema_migrations.
func (db *DB) applied(ctx context.Context) (map[string]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT name FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	names := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		names[name] = true
	}
	return names, rows.Err()
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
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
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
