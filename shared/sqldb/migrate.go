package sqldb

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// migrationLock is the PostgreSQL advisory lock every schema change is
// made under, so instances starting together on one database take turns.
const migrationLock = 7349122

// Migrate applies, in name order, the *.sql files of each fsys's folder
// named after the dialect that are not yet recorded in schema_migrations,
// each in its own transaction. Names must be unique across the sets (a
// shared package prefixes its own, e.g. feed_001_checkpoints.sql). Several
// instances may start at once on PostgreSQL: every schema change, the
// schema_migrations table included, is made under one advisory lock. A
// database that already has every migration is only read, so a service can
// start on a read-only one (and answer its writes 503).
func (db *DB) Migrate(ctx context.Context, sets ...fs.FS) error {
	dir := string(db.Dialect)
	bodies := map[string]fs.FS{}
	var names []string
	for _, fsys := range sets {
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return fmt.Errorf("migrations: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
				continue
			}
			if _, dup := bodies[e.Name()]; dup {
				return fmt.Errorf("migration %s: the name is in two sets", e.Name())
			}
			bodies[e.Name()] = fsys
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	applied, err := db.applied(ctx)
	if err != nil { // no table yet
		err := db.migration(ctx, func(tx *Tx) error {
			_, err := tx.tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)`)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrations table: %w", err)
		}
	}
	for _, name := range names {
		if applied[name] {
			continue
		}
		body, err := fs.ReadFile(bodies[name], path.Join(dir, name))
		if err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
		err = db.migration(ctx, func(tx *Tx) error {
			var n int
			if err := tx.tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = $1`, name).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.tx.ExecContext(ctx, string(body)); err != nil {
				return err
			}
			_, err := tx.tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)`, name, time.Now().UnixMicro())
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

// migration runs fn in a write transaction holding the migration lock.
// Schema SQL runs unprepared (a migration may hold several statements).
func (db *DB) migration(ctx context.Context, fn func(*Tx) error) error {
	return db.Write(ctx, func(tx *Tx) error {
		if db.Dialect == Postgres {
			if _, err := tx.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// applied returns the names recorded in schema_migrations.
func (db *DB) applied(ctx context.Context) (map[string]bool, error) {
	rows, err := db.sql.QueryContext(ctx, `SELECT name FROM schema_migrations`)
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
