package sqldb_test

import (
	"context"
	"testing"
	"time"

	"syndic/shared/servicetest"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// waitClosed fails t unless ch closes within the deadline.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Committed did not fire", what)
	}
}

// TestCommittedAcrossInstances: on PostgreSQL a commit by one instance
// wakes the waiters of another on the same schema, also after the
// listening connection was cut.
func TestCommittedAcrossInstances(t *testing.T) {
	url := sqldbtest.PostgresURL(t)
	ctx := context.Background()
	migrated(t, url)
	a, b := servicetest.OpenDB(t, url), servicetest.OpenDB(t, url)
	insert := func(db *sqldb.DB, v int) {
		t.Helper()
		if err := db.Write(ctx, func(tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO t (v) VALUES ($1)`, v)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	// untilHeard commits on a until a commit wakes b (b listens from Open
	// on, and fires once whenever its LISTEN is in place).
	untilHeard := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ch := b.Committed()
			insert(a, 1)
			select {
			case <-ch:
				return
			case <-time.After(100 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatal(what)
				}
			}
		}
	}
	untilHeard("a commit by one instance never woke the other")
	if err := servicetest.OpenDB(t, url).Close(); err != nil { // and closed again when t ends
		t.Fatal(err)
	}
	for i := range 3 {
		ch := b.Committed()
		insert(a, i)
		waitClosed(t, ch, "commit by the other instance")
	}

	// Cut b's listening connection: it reconnects, and commits reach it again.
	var n int
	err := b.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN "syndic_commits_' || current_schema() || '"'`).Scan(&n)
	if err != nil || n == 0 {
		t.Fatalf("terminate listeners: %d, %v", n, err)
	}
	untilHeard("after its LISTEN connection was cut, the instance never heard of commits again")
	for i := range 3 {
		ch := b.Committed()
		insert(a, i)
		waitClosed(t, ch, "commit after reconnecting")
	}
}
