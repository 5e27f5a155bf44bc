package sqldb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"syndic/shared/sqldb/sqldbtest"
)

// each runs fn on a migrated SQLite and, from TEST_DATABASE_URL, PostgreSQL
// database with a table k (unique v).
func each(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Helper()
	for name, url := range map[string]func(testing.TB) string{"sqlite": sqldbtest.SQLiteURL, "postgres": sqldbtest.PostgresURL} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, err := Open(ctx, url(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			schema := fstest.MapFS{"migrations/001_k.sql": {Data: []byte(`CREATE TABLE k (v {{int}} NOT NULL UNIQUE);`)}}
			if err := db.Migrate(ctx, schema); err != nil {
				t.Fatal(err)
			}
			fn(t, db)
		})
	}
}

// queued blocks the committer with a write of its own, runs start (which
// queues writes behind it), waits until n writes are queued and lets the
// committer go: those n run as one batch. It returns when the committer has
// taken them and the holding write has committed.
func queued(t *testing.T, db *DB, n int, start func()) {
	t.Helper()
	ctx := context.Background()
	holds := make([]chan struct{}, 1)
	var holders sync.WaitGroup
	let := func(i int) {
		if holds[i] != nil {
			close(holds[i])
			holds[i] = nil
		}
	}
	defer func() { // a failure too lets every holder go
		for i := range holds {
			let(i)
		}
		holders.Wait()
	}()
	for i := range holds {
		hold, held := make(chan struct{}), make(chan struct{})
		holds[i] = hold
		holders.Go(func() {
			db.Write(ctx, func(tx *Tx) error {
				close(held)
				<-hold
				return nil
			})
		})
		<-held
	}
	start()
	wait := func(what string, done func() bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !done() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d writes queued", what, len(db.queue.in))
			}
			time.Sleep(time.Millisecond)
		}
	}
	wait(fmt.Sprintf("want %d", n), func() bool { return len(db.queue.in) >= n })
	let(0)
	wait("want them taken", func() bool { return len(db.queue.in) == 0 })
}

// TestGroupCommitIsolatesFailures: writes queued together commit in one
// transaction, and the ones that fail — an error returned, a constraint
// violated, a panic, a context cancelled while waiting — leave nothing
// behind and take nothing from the others.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	t.Parallel()
	each(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if err := db.Write(ctx, func(tx *Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO k (v) VALUES ($1)`, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		before := db.Stats()
		boom := errors.New("boom")
		cancelled, cancel := context.WithCancel(ctx)
		// Each write also stages a row, flushed once for the batch.
		var flushes [][]int
		var ran []int
		stage := NewStage(func(ctx context.Context, tx *Tx, items []int) error {
			flushes = append(flushes, items)
			for _, i := range items {
				if _, err := tx.Exec(ctx, `INSERT INTO k (v) VALUES ($1)`, 5000+i); err != nil {
					return err
				}
			}
			return nil
		})
		const n = 12
		errs := make([]error, n)
		var panics []any
		var wg sync.WaitGroup
		var mu sync.Mutex
		queued(t, db, n, func() {
			write := func(i int) {
				wg.Go(func() {
					defer func() {
						if p := recover(); p != nil {
							mu.Lock()
							panics = append(panics, p)
							mu.Unlock()
						}
					}()
					wctx := ctx
					if i == 9 {
						wctx = cancelled
					}
					errs[i] = db.Write(wctx, func(tx *Tx) error {
						if _, err := tx.Exec(ctx, `INSERT INTO k (v) VALUES ($1)`, 100+i); err != nil {
							return err
						}
						stage.Add(tx, i)
						ran = append(ran, i) // the committer runs the batch's writes one after another
						switch i {
						case 3:
							return boom // after a write of its own: undone
						case 5:
							_, err := tx.Exec(ctx, `INSERT INTO k (v) VALUES ($1)`, 0) // unique violation
							return err
						case 7:
							panic("seven")
						}
						// A later statement of a write still works after an
						// earlier write in the batch failed.
						_, err := tx.Exec(ctx, `INSERT INTO k (v) VALUES ($1)`, 1000+i)
						return err
					})
				})
			}
			for i := range n {
				if i != 9 {
					write(i)
				}
			}
			for len(db.queue.in) < n-1 {
				time.Sleep(time.Millisecond)
			}
			write(9)
			for len(db.queue.in) < n {
				time.Sleep(time.Millisecond)
			}
			cancel() // the tenth waits in the queue with its context cancelled
		})
		wg.Wait()

		want := map[int]error{3: boom, 9: context.Canceled}
		for i, err := range errs {
			switch i {
			case 3, 9:
				if !errors.Is(err, want[i]) {
					t.Errorf("write %d: %v, want %v", i, err, want[i])
				}
			case 5:
				if err == nil {
					t.Errorf("write %d: no error for a unique violation", i)
				}
			case 7:
			default:
				if err != nil {
					t.Errorf("write %d: %v", i, err)
				}
			}
		}
		if len(panics) != 1 || panics[0] != "seven" {
			t.Errorf("panics = %v, want [seven] re-raised in its caller", panics)
		}
		var got []int
		rows, err := db.Query(ctx, `SELECT v FROM k ORDER BY v`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v int
			rows.Scan(&v)
			got = append(got, v)
		}
		rows.Close()
		wantRows := []int{0}
		for _, i := range []int{0, 1, 2, 4, 6, 8, 10, 11} {
			wantRows = append(wantRows, 100+i)
		}
		for _, i := range []int{0, 1, 2, 4, 6, 8, 10, 11} {
			wantRows = append(wantRows, 1000+i)
		}
		for _, i := range []int{0, 1, 2, 4, 6, 8, 10, 11} {
			wantRows = append(wantRows, 5000+i)
		}
		// Each failure rolled the batch back and ran the rest again: the
		// last run is that of the eight that succeeded, and its rows alone
		// were flushed, in the order they ran; a failed write ran once.
		runs := map[int]int{}
		for _, i := range ran {
			runs[i]++
		}
		kept := ran[max(len(ran)-8, 0):]
		if got := slices.Sorted(slices.Values(kept)); fmt.Sprint(got) != fmt.Sprint([]int{0, 1, 2, 4, 6, 8, 10, 11}) {
			t.Errorf("last run %v (of %v), want the eight writes that succeeded", kept, ran)
		}
		if fmt.Sprint(flushes) != fmt.Sprint([][]int{kept}) {
			t.Errorf("flushes = %v, want one flush of the rows the writes that succeeded staged, in the order they last ran: %v", flushes, kept)
		}
		for _, i := range []int{3, 5, 7} {
			if runs[i] != 1 {
				t.Errorf("failing write %d ran %d times, want once", i, runs[i])
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(wantRows) {
			t.Errorf("rows = %v\nwant   %v", got, wantRows)
		}
		after := db.Stats()
		const k = 1
		if c, w := after.Commits-before.Commits, after.Writes-before.Writes; c != k+1 || w != k+8 {
			t.Errorf("%d commits of %d writes, want %d of %d: the holding writes, then the eight that succeeded in one batch", c, w, k+1, k+8)
		}
	})
}

// TestWriteAfterClose: a Write on a closed database fails, it doesn't hang.
func TestWriteAfterClose(t *testing.T) {
	t.Parallel()
	db, err := Open(context.Background(), sqldbtest.SQLiteURL(t))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := db.Write(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, errClosed) {
		t.Fatalf("Write after Close = %v, want %v", err, errClosed)
	}
}

// TestSynchronousPragma: SQLite opens durable (synchronous=FULL, WAL), and a
// synchronous pragma in the URL is the one that holds.
func TestSynchronousPragma(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for params, want := range map[string]int{"": 2, "?_pragma=synchronous(NORMAL)": 1, "?_pragma=synchronous(OFF)&_pragma=cache_size(-4000)": 0, "?_pragma=SYNCHRONOUS(extra)": 3} {
		db, err := Open(ctx, sqldbtest.SQLiteURL(t)+params)
		if err != nil {
			t.Fatal(err)
		}
		var sync int
		var mode string
		if err := db.QueryRow(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if sync != want || mode != "wal" {
			t.Errorf("%q: synchronous = %d, journal_mode = %s; want %d, wal", params, sync, mode, want)
		}
	}
}

// TestDeadlockRunsAgain: two instances (replicas) on one PostgreSQL whose
// writes take two rows in opposite orders deadlock; PostgreSQL fails one of
// them to break it, and that write runs again instead of failing: both
// commit.
func TestDeadlockRunsAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := sqldbtest.PostgresURL(t)
	var dbs [2]*DB
	for i := range dbs {
		db, err := Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		schema := fstest.MapFS{"migrations/001_rows.sql": {Data: []byte(`CREATE TABLE rows (id {{int}} PRIMARY KEY, n {{int}} NOT NULL);
			INSERT INTO rows (id, n) VALUES (1, 0), (2, 0);`)}}
		if err := db.Migrate(ctx, schema); err != nil {
			t.Fatal(err)
		}
		dbs[i] = db
	}
	var (
		first [2]sync.Once
		took  [2]chan struct{}
		runs  [2]int
		wg    sync.WaitGroup
		errs  [2]error
	)
	for w := range 2 {
		took[w] = make(chan struct{})
	}
	for w := range 2 {
		wg.Go(func() {
			errs[w] = dbs[w].Write(ctx, func(tx *Tx) error {
				runs[w]++
				mine, theirs := w+1, 2-w
				if _, err := tx.Exec(ctx, `UPDATE rows SET n = n + 1 WHERE id = $1`, mine); err != nil {
					return err
				}
				first[w].Do(func() { close(took[w]) })
				<-took[1-w] // the other holds its row: each now waits for the other's
				_, err := tx.Exec(ctx, `UPDATE rows SET n = n + 1 WHERE id = $1`, theirs)
				return err
			})
		})
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v, want it run again after the deadlock", w, err)
		}
	}
	if runs[0]+runs[1] < 3 { // twice when the rerun met the same race again
		t.Errorf("runs %v: want one of the two run again", runs)
	}
	var n1, n2 int
	if err := dbs[0].QueryRow(ctx, `SELECT (SELECT n FROM rows WHERE id = 1), (SELECT n FROM rows WHERE id = 2)`).Scan(&n1, &n2); err != nil {
		t.Fatal(err)
	}
	if n1 != 2 || n2 != 2 {
		t.Errorf("rows hold %d and %d, want 2 and 2", n1, n2)
	}
}
