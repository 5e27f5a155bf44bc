package contacts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"syndic/shared/derrors"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// TestStore runs one suite against SQLite and PostgreSQL.
func TestStore(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := openStore(t, url)

		ada, err := s.Create(ctx, Input{Name: "Ada Lovelace", Email: "ada@example.org", Phone: "+44 20"})
		if err != nil {
			t.Fatal(err)
		}
		if ada.ID == 0 || ada.Version != 1 || ada.CreatedAt.IsZero() || !ada.CreatedAt.Equal(ada.UpdatedAt) {
			t.Fatalf("created %+v", ada)
		}
		got, err := s.Get(ctx, ada.ID)
		if err != nil || got != ada {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, ada)
		}
		grace, _ := s.Create(ctx, Input{Name: "Grace Hopper", Email: "grace@example.org"})

		t.Run("list and search", func(t *testing.T) {
			for q, want := range map[string]int{"": 2, "ada": 1, "EXAMPLE.ORG": 2, "+44": 1, "nobody": 0, "%": 0, "_": 0} {
				got, err := s.List(ctx, Query{Search: q})
				if err != nil || len(got) != want {
					t.Errorf("List(%q) = %d contacts, %v; want %d", q, len(got), err, want)
				}
			}
			page, _ := s.List(ctx, Query{Limit: 1, Offset: 1})
			if len(page) != 1 || page[0].ID != grace.ID {
				t.Errorf("second page = %+v, want Grace", page)
			}
		})

		t.Run("update at version", func(t *testing.T) {
			up, err := s.Update(ctx, ada.ID, 1, Input{Name: "Ada Lovelace", Email: "ada@lovelace.org", Phone: "+44 20"})
			if err != nil || up.Version != 2 || up.Email != "ada@lovelace.org" || !up.CreatedAt.Equal(ada.CreatedAt) {
				t.Fatalf("Update = %+v, %v", up, err)
			}
			_, err = s.Update(ctx, ada.ID, 1, Input{Name: "Stale", Email: "stale@example.org"})
			var stale *StaleError
			if !errors.As(err, &stale) || !errors.Is(err, derrors.ErrConflict) || stale.Current.Version != 2 {
				t.Fatalf("stale update: %v, want a StaleError at version 2", err)
			}
			same, err := s.Update(ctx, ada.ID, 2, Input{Name: "Ada Lovelace", Email: "ada@lovelace.org", Phone: "+44 20"})
			if err != nil || same.Version != 2 {
				t.Fatalf("no-op update = %+v, %v; want version 2 unchanged", same, err)
			}
			if _, err := s.Update(ctx, 999, 1, Input{Name: "X", Email: "x@example.org"}); !errors.Is(err, derrors.ErrNotFound) {
				t.Fatalf("update unknown: %v, want not found", err)
			}
		})

		t.Run("delete", func(t *testing.T) {
			if err := s.Delete(ctx, grace.ID, 7); !errors.Is(err, derrors.ErrConflict) {
				t.Fatalf("stale delete: %v, want conflict", err)
			}
			if err := s.Delete(ctx, grace.ID, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(ctx, grace.ID); !errors.Is(err, derrors.ErrNotFound) {
				t.Fatalf("Get deleted: %v, want not found", err)
			}
			if err := s.Delete(ctx, grace.ID, 0); !errors.Is(err, derrors.ErrNotFound) {
				t.Fatalf("delete twice: %v, want not found", err)
			}
			again, _ := s.Create(ctx, Input{Name: "New", Email: "new@example.org"})
			if again.ID <= grace.ID {
				t.Errorf("id %d reused after deleting %d", again.ID, grace.ID)
			}
		})

		t.Run("event log", func(t *testing.T) {
			head, err := s.Head(ctx)
			if err != nil || head != 5 {
				t.Fatalf("Head = %d, %v; want 5", head, err)
			}
			evs, err := s.Events(ctx, 1, head)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{EventCreated, EventCreated, EventUpdated, EventDeleted, EventCreated}
			for i, e := range evs {
				if e.Seq != int64(i+1) || e.Type != want[i] {
					t.Errorf("event %d = seq %d %s, want seq %d %s", i, e.Seq, e.Type, i+1, want[i])
				}
			}
			if evs[2].Title != "Ada Lovelace's email changed" || evs[2].Summary != "Ada Lovelace: email is now ada@lovelace.org" {
				t.Errorf("update event reads %q / %q", evs[2].Title, evs[2].Summary)
			}
			if evs[3].Title != "Grace Hopper was deleted" || evs[3].Link != fmt.Sprintf("/contacts/%d", grace.ID) {
				t.Errorf("tombstone reads %q, links %q", evs[3].Title, evs[3].Link)
			}
		})

		t.Run("concurrent writers get dense seqs", func(t *testing.T) {
			before, _ := s.Head(ctx)
			var wg sync.WaitGroup
			for i := range 40 {
				wg.Go(func() {
					if _, err := s.Create(ctx, Input{Name: fmt.Sprint("P", i), Email: fmt.Sprintf("p%d@example.org", i)}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			head, _ := s.Head(ctx)
			evs, _ := s.Events(ctx, before+1, head)
			if head != before+40 || len(evs) != 40 {
				t.Fatalf("head %d, %d events; want %d and 40", head, len(evs), before+40)
			}
			for i, e := range evs {
				if e.Seq != before+1+int64(i) {
					t.Fatalf("seq %d at %d: not dense", e.Seq, i)
				}
			}
		})
	})
}

// TestFailureInsideTransaction injects a failure after the change and after
// the event: neither the change nor the event may remain.
func TestFailureInsideTransaction(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := openStore(t, url)
		c, err := s.Create(ctx, Input{Name: "Ada", Email: "ada@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		boom := errors.New("injected failure")
		for _, step := range []string{"after-change", "after-event"} {
			t.Run(step, func(t *testing.T) {
				s.failAt = func(at string) error {
					if at == step {
						return boom
					}
					return nil
				}
				defer func() { s.failAt = nil }()
				ops := map[string]func() error{
					"create": func() error { _, err := s.Create(ctx, Input{Name: "Bob", Email: "bob@example.org"}); return err },
					"update": func() error {
						_, err := s.Update(ctx, c.ID, 1, Input{Name: "Ada K", Email: "ada@example.org"})
						return err
					},
					"delete": func() error { return s.Delete(ctx, c.ID, 1) },
				}
				for name, op := range ops {
					if err := op(); !errors.Is(err, boom) {
						t.Fatalf("%s: %v, want the injected failure", name, err)
					}
				}
				s.failAt = nil
				head, _ := s.Head(ctx)
				all, _ := s.List(ctx, Query{})
				evs, _ := s.Events(ctx, 1, 100)
				if head != 1 || len(evs) != 1 || len(all) != 1 || all[0] != c {
					t.Fatalf("after failures: head %d, %d events, contacts %+v; want only Ada at version 1 and one event", head, len(evs), all)
				}
			})
		}
	})
}

// TestListSortsRegardlessOfCase: "ada" sorts beside "Ada", not after "Zoe".
func TestListSortsRegardlessOfCase(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, _ := openStore(t, url)
		for _, in := range []Input{{Name: "zoe", Email: "zoe@example.net"}, {Name: "ada", Email: "ada2@example.net"}, {Name: "Zed", Email: "zed@example.net"}, {Name: "Ada", Email: "ada@example.net"}} {
			if _, err := s.Create(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.List(ctx, Query{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range all {
			names = append(names, c.Name)
		}
		if strings.Join(names, ",") != "Ada,ada,Zed,zoe" {
			t.Errorf("order = %v, want Ada, ada, Zed, zoe", names)
		}
	})
}

// TestEmailTakenAtOnce: writes on two instances of one database (two
// replicas) all try one
// email at once, in different cases: one gets it, every other is refused
// with the email problem, and the database holds it once.
func TestEmailTakenAtOnce(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		var stores []*SQLStore
		for range 2 {
			db, err := sqldb.Open(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			s, err := NewSQLStore(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			stores = append(stores, s)
		}
		const n = 24
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				email := "Grace@Example.org"
				if i%2 == 1 {
					email = strings.ToLower(email)
				}
				_, errs[i] = stores[i%2].Create(ctx, Input{Name: fmt.Sprint("Grace ", i), Email: email})
			})
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			var p derrors.Problems
			switch {
			case err == nil:
				won++
			case errors.As(err, &p) && p["email"] != "":
			default:
				t.Errorf("create %d: %v, want the email problem", i, err)
			}
		}
		all, err := stores[0].List(ctx, Query{Search: "grace@example.org"})
		if err != nil {
			t.Fatal(err)
		}
		if won != 1 || len(all) != 1 {
			t.Fatalf("%d creates succeeded and %d contacts hold the email, want 1 and 1", won, len(all))
		}
	})
}
