package sqldb

import (
	"context"
	"errors"
	"fmt"
)

// Group commit. Every Write is queued for the DB's one committer, which
// runs what is queued — up to maxBatch writes — in one transaction and
// commits it once: with durable commits (an fsync on SQLite, a WAL flush
// on PostgreSQL) the writes of a batch share that cost. It adds no wait:
// a batch is whatever queued while the previous one ran and committed, so
// a lone writer commits alone and many writers commit together. One
// committer on PostgreSQL too: with 2 or 4 batches at once, contacts'
// writes (8 writers, store only) went 1,600–1,750/s → 1,450/s → 1,130–1,300/s,
// the batches smaller and every one queueing on the event_head row.
//
// Each write in a batch of several runs inside a savepoint of its own:
// when its function fails (or panics) the transaction is rolled back to
// that savepoint, that write alone gets the error and the others stay in
// the batch. When the batch itself breaks — a Stage's flush or the commit
// fails, or the database rolled the whole transaction back by itself
// (SQLite does so on some I/O and disk-full errors) — every write in it
// gets the error; none is reported done unless the commit that holds it
// returned.

// maxBatch bounds the writes committed together, and so how long the first
// of them waits for the others to run. A batch's savepoints nest (none is
// released), which PostgreSQL keeps cheap up to 64 per transaction.
const maxBatch = 32

// errClosed answers a Write after Close.
var errClosed = errors.New("sqldb: database is closed")

// request is one Write waiting for its batch.
type request struct {
	ctx  context.Context
	fn   func(*Tx) error
	done chan outcome
}

// outcome is what a request's Write returns, or re-panics with.
type outcome struct {
	err      error
	panicked any
}

// queue hands requests to the committer; closed by Close.
type queue struct {
	in   chan *request
	done chan struct{} // closed when the committer has returned
}

func startCommitter(db *DB) {
	db.queue = queue{in: make(chan *request, maxBatch), done: make(chan struct{})}
	go db.commitLoop()
}

// Write runs fn in a transaction and commits when it returns nil; then
// every channel Committed handed out is closed. When fn fails, or panics,
// nothing fn wrote remains and Write returns its error (or panics with its
// value). An error that says the database can't take writes now
// (read-only, disk full, unreachable) wraps derrors.ErrUnavailable: a 503
// with the reason. fn may share its transaction with other Writes of this
// process (group commit, above); it runs on the committer's goroutine, so
// it must not call Write itself. ctx stops a Write still waiting for its
// batch; once fn has started, its statements run to the end.
func (db *DB) Write(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{ctx: ctx, fn: fn, done: make(chan outcome, 1)}
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return errClosed
	}
	db.queue.in <- r
	db.closeMu.RUnlock()
	out := <-r.done
	if out.panicked != nil {
		panic(out.panicked)
	}
	return out.err
}

// commitLoop is the committer: it takes what is queued, up to maxBatch
// requests, and runs them as one batch, until Close closes the queue.
func (db *DB) commitLoop() {
	defer close(db.queue.done)
	batch := make([]*request, 0, maxBatch)
	for r := range db.queue.in {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-db.queue.in:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		db.commitBatch(batch)
	}
}

// commitBatch runs batch in one transaction and tells each request how it
// ended, once the commit has.
func (db *DB) commitBatch(batch []*request) {
	outs := make([]outcome, len(batch))
	finish := func() {
		for i, r := range batch {
			r.done <- outs[i]
		}
	}
	fail := func(err error) {
		for i := range outs {
			if outs[i].panicked == nil {
				outs[i].err = err
			}
		}
		finish()
	}
	// The transaction is not the requests': none of their contexts can
	// roll it back under the others.
	ctx := context.Background()
	stx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		fail(classify(fmt.Errorf("begin: %w", err)))
		return
	}
	tx := &Tx{tx: stx, db: db}
	alone := len(batch) == 1 // one request: its failure rolls back the transaction, no savepoint needed
	kept := 0
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			outs[i].err = err
			continue
		}
		if !alone {
			if _, err := tx.Exec(ctx, `SAVEPOINT write`); err != nil {
				stx.Rollback()
				fail(classify(fmt.Errorf("savepoint: %w", err)))
				return
			}
		}
		mark := len(tx.staged)
		outs[i] = run(r, tx)
		if outs[i] == (outcome{}) {
			kept++
			continue
		}
		tx.staged = tx.staged[:mark]
		if outs[i].err != nil {
			outs[i].err = classify(outs[i].err)
		}
		if alone {
			break
		}
		// Undo this request's work alone. When that fails, the database
		// has already rolled the whole transaction back.
		if _, err := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT write`); err != nil {
			stx.Rollback()
			fail(classify(fmt.Errorf("batch rolled back by the database after: %w", outcomeErr(outs[i]))))
			return
		}
	}
	if kept == 0 {
		stx.Rollback()
		finish()
		return
	}
	if err := tx.flushStaged(ctx); err != nil {
		stx.Rollback()
		fail(classify(err))
		return
	}
	if err := stx.Commit(); err != nil {
		fail(classify(fmt.Errorf("commit: %w", err)))
		return
	}
	db.stats.commits.Add(1)
	db.stats.writes.Add(int64(kept))
	db.commits.Notify()
	if db.peers != nil {
		db.peers.committed()
	}
	finish()
}

// run runs r's function on tx, turning a panic into its outcome.
func run(r *request, tx *Tx) (out outcome) {
	defer func() {
		if p := recover(); p != nil {
			out = outcome{panicked: p}
		}
	}()
	return outcome{err: r.fn(tx)}
}

// outcomeErr is the error an outcome stands for, a panic included.
func outcomeErr(o outcome) error {
	if o.panicked != nil {
		return fmt.Errorf("panic: %v", o.panicked)
	}
	return o.err
}
