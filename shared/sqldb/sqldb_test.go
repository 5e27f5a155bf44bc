package sqldb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"syndic/shared/derrors"
	"syndic/shared/servicetest"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

var migrations = fstest.MapFS{
	"migrations/001_t.sql": {Data: []byte(`CREATE TABLE t (v {{int}} NOT NULL);`)},
	"migrations/002_u.sql": {Data: []byte(`CREATE TABLE u (v {{int}} NOT NULL);`)},
}

// TestMigrationWords: one schema, with the words for what the dialects
// spell differently, makes the same table on both.
func TestMigrationWords(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := servicetest.OpenDB(t, url)
		schema := fstest.MapFS{"migrations/001_w.sql": {Data: []byte(`CREATE TABLE w (
			id {{id}}, n {{int}} NOT NULL, flag {{bool}} NOT NULL DEFAULT {{false}});`)}}
		if err := db.Migrate(ctx, schema); err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, n := range []int64{1 << 40, 7} {
			err := db.Write(ctx, func(tx *sqldb.Tx) error {
				var id int64
				if err := tx.QueryRow(ctx, `INSERT INTO w (n) VALUES ($1) RETURNING id`, n).Scan(&id); err != nil {
					return err
				}
				ids = append(ids, id)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if ids[0] < 1 || ids[1] <= ids[0] {
			t.Errorf("ids = %v, want assigned and increasing", ids)
		}
		var n int64
		var flag bool
		if err := db.QueryRow(ctx, `SELECT n, flag FROM w WHERE id = $1`, ids[0]).Scan(&n, &flag); err != nil {
			t.Fatal(err)
		}
		if n != 1<<40 || flag {
			t.Errorf("row = %d, %v; want %d, false", n, flag, int64(1<<40))
		}
	})
}

func TestOpenMigrateTx(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		db := servicetest.OpenDB(t, url)
		if err := db.Ready(ctx); err == nil {
			t.Error("ready before migrations")
		}
		for range 2 { // applying twice is a no-op
			if err := db.Migrate(ctx, migrations); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		err := db.Write(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO t (v) VALUES ($1)`, 1); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Tx = %v, want boom", err)
		}
		if err := db.Write(ctx, func(tx *sqldb.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO t (v) VALUES ($1)`, 2)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var sum int
		db.QueryRow(ctx, `SELECT coalesce(sum(v), 0) FROM t`).Scan(&sum)
		if sum != 2 {
			t.Errorf("sum = %d, want 2: the failed transaction left a row", sum)
		}
		// Exec: one statement as a write, the rows it changed.
		if n, err := db.Exec(ctx, `INSERT INTO t (v) VALUES ($1), ($1)`, 3); err != nil || n != 2 {
			t.Fatalf("Exec inserting two rows: %d, %v", n, err)
		}
		if n, err := db.Exec(ctx, `UPDATE t SET v = v + 1 WHERE v = $1`, 99); err != nil || n != 0 {
			t.Errorf("Exec changing nothing: %d, %v", n, err)
		}
		if _, err := db.Exec(ctx, `INSERT INTO nowhere (v) VALUES (1)`); err == nil {
			t.Error("Exec into a table that is not there: no error")
		}
	})
}

func TestOpenRefusesUnknownURLs(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"mysql://x", "sqlite:", "", "postgres://nobody:secret@127.0.0.1:1/none"} {
		_, err := sqldb.Open(context.Background(), url)
		if err == nil {
			t.Errorf("Open(%q) succeeded", url)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error shows the password: %v", url, err)
		}
	}
}

// migrated applies the test migrations to the database at url.
func migrated(t *testing.T, url string) {
	t.Helper()
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(context.Background(), migrations); err != nil {
		t.Fatal(err)
	}
}

// TestUnwritableIsUnavailable: a read-only or full database answers
// ErrUnavailable (503 with the reason), not a bare error (500).
func TestUnwritableIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := sqldbtest.SQLiteURL(t)
	migrated(t, path)
	insert := func(db *sqldb.DB, n int) error {
		return db.Write(ctx, func(tx *sqldb.Tx) error {
			for i := range n {
				if _, err := tx.Exec(ctx, `INSERT INTO t (v) VALUES ($1)`, i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for name, tc := range map[string]struct {
		params string
		rows   int
		want   string
	}{
		"read-only": {"_pragma=query_only(1)", 1, "read-only"},
		"full":      {"_pragma=max_page_count(8)", 5000, "full"},
	} {
		t.Run(name, func(t *testing.T) {
			db, err := sqldb.Open(ctx, path+"?"+tc.params)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = insert(db, tc.rows)
			if !errors.Is(err, derrors.ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrUnavailable saying %q", err, tc.want)
			}
		})
	}
	t.Run("postgres read-only", func(t *testing.T) {
		url := sqldbtest.PostgresURL(t)
		migrated(t, url)
		ro, err := sqldb.Open(ctx, url+"&default_transaction_read_only=on")
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		if err := insert(ro, 1); !errors.Is(err, derrors.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	})
}
