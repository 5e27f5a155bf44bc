package contacts

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"syndic/shared/derrors"
	"syndic/shared/sqldb/sqldbtest"
)

// TestSnapshot: the latest event of each contact up to a seq, tombstones
// included, paged by id, on SQLite and PostgreSQL.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := openStore(t, url)
		var ids []int64
		for _, name := range []string{"Ada", "Grace", "Edsger", "Barbara"} {
			c, err := s.Create(ctx, Input{Name: name, Email: name + "@example.org"})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, c.ID)
		}
		if _, err := s.Update(ctx, ids[0], 1, Input{Name: "Ada Lovelace", Email: "ada@example.org"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, ids[1], 0); err != nil { // seq 6: Grace's tombstone
			t.Fatal(err)
		}
		if _, err := s.Update(ctx, ids[2], 1, Input{Name: "Edsger Dijkstra", Email: "e@example.org"}); err != nil { // seq 7
			t.Fatal(err)
		}

		type row struct {
			seq  int64
			typ  string
			name string
		}
		read := func(asOf int64, after string, limit int) ([]row, string) {
			t.Helper()
			events, last, err := s.Snapshot(ctx, asOf, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			var out []row
			for _, e := range events {
				var c Contact
				if err := json.Unmarshal(e.Data, &c); err != nil {
					t.Fatal(err)
				}
				out = append(out, row{e.Seq, e.Type, c.Name})
			}
			return out, last
		}
		first, last := read(7, "", 3)
		want := []row{{5, EventUpdated, "Ada Lovelace"}, {6, EventDeleted, "Grace"}, {7, EventUpdated, "Edsger Dijkstra"}}
		if len(first) != 3 || first[0] != want[0] || first[1] != want[1] || first[2] != want[2] {
			t.Errorf("first page as of 7 = %+v, want %+v", first, want)
		}
		rest, end := read(7, last, 3)
		if len(rest) != 1 || rest[0] != (row{4, EventCreated, "Barbara"}) {
			t.Errorf("second page = %+v, want Barbara's creation", rest)
		}
		if none, _ := read(7, end, 3); len(none) != 0 {
			t.Errorf("after the last contact: %+v, want none", none)
		}
		// As of seq 5, Grace was alive and Edsger not yet renamed.
		if old, _ := read(5, "", 10); len(old) != 4 || old[1] != (row{2, EventCreated, "Grace"}) || old[2] != (row{3, EventCreated, "Edsger"}) {
			t.Errorf("as of 5: %+v", old)
		}
		if _, _, err := s.Snapshot(ctx, 7, "x", 3); !errors.Is(err, derrors.ErrInvalid) {
			t.Errorf("after x: %v, want invalid", err)
		}
	})
}
