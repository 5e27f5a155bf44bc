package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"syndic/shared/derrors"
)

// Querier reads: a *DB outside any transaction, or a *Tx inside one.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) *sql.Row
}

// Tx is a write transaction: the only way to change the database.
type Tx struct {
	tx     *sql.Tx
	db     *DB
	stmts  map[*sql.Stmt]*sql.Stmt // the DB's statements bound to this transaction
	staged []staged                // rows for the Stages, flushed before the commit
}

// Committed returns a channel that is closed when the next write commits,
// here or (on PostgreSQL) in another instance on the same schema. Take it
// before looking at the state it guards, then wait on it; a wake-up may
// also come with nothing new.
func (db *DB) Committed() <-chan struct{} { return db.commits.Wait() }

// Query runs a read outside any transaction.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := db.stmts.get(ctx, db.sql, query, true); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return db.sql.QueryContext(ctx, query, args...)
}

// QueryRow runs a read of at most one row outside any transaction.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if s := db.stmts.get(ctx, db.sql, query, true); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return db.sql.QueryRowContext(ctx, query, args...)
}

// Exec runs one statement as a write of its own (sharing a commit with
// others, as every Write) and returns how many rows it changed.
func (db *DB) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := db.Write(ctx, func(tx *Tx) error {
		res, err := tx.Exec(ctx, query, args...)
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Exec runs a statement inside the transaction. Once a write has started
// its statements run to the end: ctx's values count, its cancellation
// does not (it would break the transaction the write shares with others).
func (t *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	if s := t.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, query, args...)
}

// Query runs a read inside the transaction.
func (t *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = context.WithoutCancel(ctx)
	if s := t.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, query, args...)
}

// QueryRow runs a read of at most one row inside the transaction.
func (t *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx)
	if s := t.stmt(ctx, query); s != nil {
		return s.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, query, args...)
}

// stmt returns the DB's prepared statement for query bound to this
// transaction's connection, or nil to run it unprepared.
func (t *Tx) stmt(ctx context.Context, query string) *sql.Stmt {
	s := t.db.stmts.get(ctx, t.db.sql, query, false)
	if s == nil {
		return nil
	}
	if ts, ok := t.stmts[s]; ok {
		return ts
	}
	if t.stmts == nil {
		t.stmts = map[*sql.Stmt]*sql.Stmt{}
	}
	ts := t.tx.StmtContext(ctx, s)
	t.stmts[s] = ts
	return ts
}

// maxStatements bounds the statements kept prepared; a query beyond them
// (SQL built with a varying shape) runs unprepared.
const maxStatements = 256

// statements prepares each query once and keeps it for the life of the DB.
// database/sql prepares it again, once, on each connection that runs it,
// and Tx.StmtContext reuses that. A transaction holds a connection, so it
// never waits for a prepare (which needs one of its own: with the pool
// taken by transactions that would deadlock): the first use inside a
// transaction runs unprepared while the statement is prepared beside it.
type statements struct {
	mu       sync.RWMutex
	m        map[string]*sql.Stmt
	pending  map[string]bool
	prepping sync.WaitGroup // prepares in the background, waited for by Close
}

// get returns query's statement. When it is not prepared yet, now says
// whether to prepare it before returning (the caller holds no connection),
// within ctx, or in the background, returning nil.
func (st *statements) get(ctx context.Context, db *sql.DB, query string, now bool) *sql.Stmt {
	st.mu.RLock()
	s, ok := st.m[query]
	busy := st.pending[query] || len(st.m)+len(st.pending) >= maxStatements
	st.mu.RUnlock()
	if ok || busy {
		return s
	}
	if !now {
		st.mu.Lock()
		if st.pending == nil {
			st.pending = map[string]bool{}
		}
		st.pending[query] = true
		st.mu.Unlock()
		st.prepping.Go(func() { // beside the transaction, bounded: an unreachable database gives up
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			st.prepare(ctx, db, query)
		})
		return nil
	}
	return st.prepare(ctx, db, query)
}

// prepare prepares query within ctx; a prepare that fails or is cut short
// leaves query unprepared, to be tried again on its next use.
func (st *statements) prepare(ctx context.Context, db *sql.DB, query string) *sql.Stmt {
	s, err := db.PrepareContext(ctx, query)
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.pending, query)
	if err != nil {
		return nil // unprepared, it reports the error where it runs
	}
	if old, ok := st.m[query]; ok {
		s.Close()
		return old
	}
	if st.m == nil {
		st.m = map[string]*sql.Stmt{}
	}
	st.m[query] = s
	return s
}

// Broadcast wakes every waiter at once: Wait returns a channel that the
// next Notify closes. The zero value is ready to use.
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// Notify closes the channel Wait handed out; the next Wait gets a new one.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// Wait returns a channel that is closed at the next Notify.
func (b *Broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Scanner is a row to read columns from: *sql.Row or *sql.Rows.
type Scanner interface{ Scan(dest ...any) error }

// All runs a read on q and returns every row as scan reads it, in order;
// no rows is an empty, non-nil slice.
func All[T any](ctx context.Context, q Querier, scan func(Scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// One runs a read of one row on q and returns it as scan reads it. No row
// is derrors.ErrNotFound; errors name what was read, e.g. "contact 7".
func One[T any](ctx context.Context, q Querier, scan func(Scanner) (T, error), what, query string, args ...any) (T, error) {
	v, err := scan(q.QueryRow(ctx, query, args...))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return v, fmt.Errorf("%s: %w", what, derrors.ErrNotFound)
	case err != nil:
		return v, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}
