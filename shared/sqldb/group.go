package sqldb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Group commit. Every Write is queued for the DB's one committer, which
// runs what is queued — up to maxBatch writes — in one transaction and
// commits it once: with durable commits (an fsync on SQLite, a WAL flush
// on PostgreSQL) the writes of a batch share that cost. It adds no wait:
// a batch is whatever queued while the previous one ran and committed, so
// a lone writer commits alone and many writers commit together. One
// committer on PostgreSQL too: contacts' batches all take the event_head
// row, so a second committer's batch mostly waits for it, and the batches
// get smaller (two replicas of contacts behind HAProxy, 8 writers: 673–728
// creates/s with two committers each, 902–919 with one).
//
// A write that fails (or panics) in a batch is not allowed to fail the
// others: the transaction is rolled back, that write alone gets its error,
// and the others run again in a new transaction (a write PostgreSQL failed
// to break a deadlock with another instance's batch runs again with them,
// up to maxTries). Failures are rare (a stale version, a taken email;
// input is validated before a write), so the common batch runs each write
// once with no savepoint around it — a savepoint is one more round trip a
// write, and on PostgreSQL a subtransaction. A write's function may
// therefore run more than once; only its last run counts (Write says so).
// When the batch itself breaks — a Stage's flush or the commit fails —
// every write in it gets the error; none is reported done unless the
// commit that holds it returned.

// maxBatch bounds the writes committed together, and so how long the first
// of them waits for the others to run, and how often a batch with failing
// writes runs again.
const maxBatch = 32

// errClosed answers a Write after Close.
var errClosed = errors.New("sqldb: database is closed")

// request is one Write waiting for its batch.
type request struct {
	ctx   context.Context
	fn    func(*Tx) error
	done  chan outcome
	tries int // runs the database failed as retryable (a deadlock broken)
}

// maxTries bounds the runs of a write that keeps failing as retryable, and
// deadlockPause (to twice it) is the pause before it runs again.
const (
	maxTries      = 3
	deadlockPause = 5 * time.Millisecond
)

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
// it must not call Write itself. fn may run more than once, each run in a
// new transaction after the last was rolled back (another write of its
// batch failed): it must set what it hands back, not add to it. ctx stops
// a Write still waiting for its batch; once fn has started, its statements
// run to the end.
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
// ended, once the commit has: when a write fails, the others run again
// without it.
func (db *DB) commitBatch(batch []*request) {
	outs := make([]outcome, len(batch))
	todo := make([]int, len(batch))
	for i := range todo {
		todo[i] = i
	}
	for len(todo) > 0 {
		var err error
		var deadlocked bool
		todo, deadlocked, err = db.attempt(batch, todo, outs)
		if err != nil {
			for _, i := range todo {
				outs[i].err = err
			}
			break
		}
		if deadlocked {
			// Let the transaction that won go first: run again at once and
			// the two may take their rows in the same race again.
			time.Sleep(deadlockPause + rand.N(deadlockPause))
		}
	}
	for i, r := range batch {
		r.done <- outs[i]
	}
}

// attempt runs the requests todo of batch in one transaction. When one
// fails it rolls back, sets that one's outcome and returns the others, to
// run again (with it, and deadlocked set, when PostgreSQL failed it to
// break a deadlock); when all ran, it commits and returns none. err says
// the transaction itself failed (begin, a Stage's flush, the commit): then
// the requests returned get it.
func (db *DB) attempt(batch []*request, todo []int, outs []outcome) (again []int, deadlocked bool, err error) {
	// The transaction is not the requests': none of their contexts can
	// roll it back under the others.
	ctx := context.Background()
	stx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return todo, false, classify(fmt.Errorf("begin: %w", err))
	}
	tx := &Tx{tx: stx, db: db}
	kept := todo[:0:0]
	for n, i := range todo {
		r := batch[i]
		if err := r.ctx.Err(); err != nil { // given up while queued: never run
			outs[i].err = err
			continue
		}
		out := run(r, tx)
		if out == (outcome{}) {
			kept = append(kept, i)
			continue
		}
		stx.Rollback()
		if r.tries++; out.err != nil && retryable(out.err) && r.tries < maxTries {
			// PostgreSQL failed it to break a deadlock with another
			// instance's batch: run it again with the others.
			return append(append(kept, i), todo[n+1:]...), true, nil
		}
		if out.err != nil {
			out.err = classify(out.err)
		}
		outs[i] = out
		return append(kept, todo[n+1:]...), false, nil
	}
	if len(kept) == 0 {
		stx.Rollback()
		return nil, false, nil
	}
	if err := tx.flushStaged(ctx); err != nil {
		stx.Rollback()
		return kept, false, classify(err)
	}
	if err := stx.Commit(); err != nil {
		return kept, false, classify(fmt.Errorf("commit: %w", err))
	}
	db.stats.commits.Add(1)
	db.stats.writes.Add(int64(len(kept)))
	db.commits.Notify()
	if db.peers != nil {
		db.peers.committed()
	}
	return nil, false, nil
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
