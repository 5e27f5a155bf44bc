package calendar

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/feed"
	"syndic/shared/servicetest"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

func openStore(t testing.TB, url string) (*SQLStore, *sqldb.DB) {
	t.Helper()
	db := servicetest.OpenDB(t, url)
	s, err := NewSQLStore(context.Background(), db, Mailer{})
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

// applyContact applies one feed event the way the follower does.
func applyContact(t testing.TB, db *sqldb.DB, seq int64, typ string, c feedContact) {
	t.Helper()
	data, _ := json.Marshal(c)
	err := db.Write(context.Background(), func(tx *sqldb.Tx) error {
		return ApplyContactEvent(context.Background(), tx, feed.Event{Seq: seq, Type: typ, Data: data})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStore(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s, db := openStore(t, url)
		applyContact(t, db, 1, contactCreated, feedContact{ID: 7, Name: "Ada Lovelace", Email: "ada@example.org", Version: 1})
		applyContact(t, db, 2, contactCreated, feedContact{ID: 9, Name: "Grace Hopper", Email: "grace@example.org", Version: 1})

		in := Input{Title: "Design review", StartsAt: "2029-12-03T09:30:00+01:00", EndsAt: "2029-12-03T10:30:00+01:00", Location: "Room 1", Participants: []int64{7, 9}}.Normalize()
		a, err := s.Create(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if a.StartsAt != "2029-12-03T09:30:00+01:00" || a.Version != 1 || a.Status != StatusConfirmed || len(a.Attendees) != 2 || a.Attendees[0].Name != "Ada Lovelace" {
			t.Fatalf("created %+v", a)
		}

		t.Run("unknown and deleted participants", func(t *testing.T) {
			bad := in
			bad.Participants = []int64{7, 12345}
			if _, err := s.Create(ctx, bad); !errors.Is(err, derrors.ErrInvalid) {
				t.Fatalf("unknown participant: %v, want invalid", err)
			}
		})

		t.Run("upstream changes show everywhere", func(t *testing.T) {
			applyContact(t, db, 3, contactUpdated, feedContact{ID: 7, Name: "Ada King", Email: "ada@king.org", Version: 2})
			applyContact(t, db, 4, contactDeleted, feedContact{ID: 9, Name: "Grace Hopper", Email: "grace@example.org", Version: 2})
			got, _ := s.Appointment(ctx, a.ID)
			if len(got.Attendees) != 2 || got.Attendees[0].Name != "Ada King" || got.Attendees[0].Email != "ada@king.org" || !got.Attendees[1].Deleted {
				t.Fatalf("attendees %+v: want Ada's new name and Grace kept, marked deleted", got.Attendees)
			}
			fresh := in
			fresh.Participants = []int64{9}
			if _, err := s.Create(ctx, fresh); !errors.Is(err, derrors.ErrInvalid) {
				t.Fatalf("new appointment with a deleted contact: %v, want invalid", err)
			}
			// Saving the appointment that already has her keeps her.
			keep := in
			keep.Title = "Design review (moved)"
			up, err := s.Update(ctx, a.ID, 1, keep)
			if err != nil || up.Version != 2 || len(up.Participants) != 2 {
				t.Fatalf("update keeping a deleted participant: %+v, %v", up, err)
			}
		})

		t.Run("versions", func(t *testing.T) {
			_, err := s.Update(ctx, a.ID, 1, in)
			var stale *StaleError
			if !errors.As(err, &stale) || stale.Current.Version != 2 {
				t.Fatalf("stale update: %v", err)
			}
			if _, err := s.Cancel(ctx, a.ID, 1); !errors.Is(err, derrors.ErrConflict) {
				t.Fatalf("stale cancel: %v", err)
			}
			c, err := s.Cancel(ctx, a.ID, 2)
			if err != nil || c.Status != StatusCancelled || c.Version != 3 {
				t.Fatalf("cancel: %+v %v", c, err)
			}
			if _, err := s.Appointment(ctx, 999); !errors.Is(err, derrors.ErrNotFound) {
				t.Fatalf("unknown: %v", err)
			}
		})

		t.Run("queries", func(t *testing.T) {
			b, err := s.Create(ctx, Input{Title: "Later", StartsAt: "2030-01-01T10:00:00-05:30", EndsAt: "2030-01-01T11:00:00-05:30", Participants: []int64{7}}.Normalize())
			if err != nil {
				t.Fatal(err)
			}
			for name, tc := range map[string]struct {
				q    AppointmentQuery
				want int
			}{
				"confirmed":        {AppointmentQuery{}, 1},
				"with cancelled":   {AppointmentQuery{WithCancelled: true}, 2},
				"from 2030":        {AppointmentQuery{From: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), WithCancelled: true}, 1},
				"participant 9":    {AppointmentQuery{Participant: 9, WithCancelled: true}, 1},
				"participant none": {AppointmentQuery{Participant: 12345}, 0},
			} {
				got, err := s.Appointments(ctx, tc.q)
				if err != nil || len(got) != tc.want {
					t.Errorf("%s: %d appointments, %v; want %d", name, len(got), err, tc.want)
				}
			}
			if b.StartsAt != "2030-01-01T10:00:00-05:30" {
				t.Errorf("zone not kept: %s", b.StartsAt)
			}
			cs, _ := s.Contacts(ctx)
			if len(cs) != 2 || cs[0].Name != "Ada King" || cs[0].Seq != 3 || !cs[1].Deleted {
				t.Errorf("contacts %+v", cs)
			}
		})
	})
}

func TestApplyRefusesWhatItCannotUnderstand(t *testing.T) {
	t.Parallel()
	_, db := openStore(t, sqldbtest.SQLiteURL(t))
	for name, e := range map[string]feed.Event{
		"unknown type": {Seq: 1, Type: "contact.merged", Data: []byte(`{"id":1,"name":"A","email":"a@example.org","version":1}`)},
		"not JSON":     {Seq: 1, Type: contactCreated, Data: []byte(`{"id":`)},
		"no id":        {Seq: 1, Type: contactCreated, Data: []byte(`{"name":"A","version":1}`)},
	} {
		err := db.Write(context.Background(), func(tx *sqldb.Tx) error { return ApplyContactEvent(context.Background(), tx, e) })
		if err == nil {
			t.Errorf("%s: applied", name)
		}
	}
	var n int
	db.QueryRow(context.Background(), `SELECT count(*) FROM contacts`).Scan(&n)
	if n != 0 {
		t.Errorf("%d contacts written by refused events", n)
	}
}

// TestInstallHost: without BASE_URL a new install names its UIDs itself,
// at random and for good; one that already has appointments keeps the old
// default its subscribers know.
func TestInstallHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := sqldbtest.SQLiteURL(t)
	s, db := openStore(t, url)
	host := s.UIDHost()
	if !strings.HasPrefix(host, "i") || !strings.HasSuffix(host, "."+icalDefaultHost) || len(host) != len("i.")+12+len(icalDefaultHost) {
		t.Fatalf("new install's host = %q, want i<12 hex>.%s", host, icalDefaultHost)
	}
	again, err := NewSQLStore(ctx, db, Mailer{})
	if err != nil || again.UIDHost() != host {
		t.Fatalf("after a restart the host is %q (%v), want %q", again.UIDHost(), err, host)
	}
	other, _ := openStore(t, sqldbtest.SQLiteURL(t))
	if other.UIDHost() == host {
		t.Fatal("two installs share a UID host")
	}

	// An older database with appointments and no install row.
	old, db := openStore(t, sqldbtest.SQLiteURL(t))
	if _, err := old.Create(ctx, Input{Title: "Old", StartsAt: "2030-01-01T10:00:00Z", EndsAt: "2030-01-01T11:00:00Z"}.Normalize()); err != nil {
		t.Fatal(err)
	}
	if err := db.Write(ctx, func(tx *sqldb.Tx) error { _, err := tx.Exec(ctx, `DELETE FROM install`); return err }); err != nil {
		t.Fatal(err)
	}
	if kept, err := NewSQLStore(ctx, db, Mailer{}); err != nil || kept.UIDHost() != icalDefaultHost {
		t.Fatalf("older install's host = %q (%v), want %q", kept.UIDHost(), err, icalDefaultHost)
	}
}
