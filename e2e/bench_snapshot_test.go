package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/shared/feed"
	"syndic/shared/sqldb"
)

// BenchmarkSnapshot: a new calendar reaches lag 0 on a contacts feed of
// snapshotEvents events over snapshotContacts contacts (each created, then
// updated in rounds; every tenth deleted in the last round), once with
// FEED_START=beginning (replaying every archive page of 50) and once from
// the snapshot (FEED_START=snapshot, the default). One op is one whole
// start into a fresh database, timed from the call that starts calendar
// to the commit of the checkpoint at the head (OnApplied). beginning runs
// first and reports events/s; snapshot reports ratio, its time over
// beginning's (issue 10 asks ≤ 0.2). Each copy must equal contacts' state
// field by field, and the snapshot's copy the replayed one, seq included,
// or the benchmark fails.
//
// The log is seeded through contacts' store (SQLStore.Create, Update and
// Delete, 8 writers) into the database contacts is then started on, not
// through HTTP; the seeding time is logged.
//
//	go test -run '^$' -bench 'Snapshot' -benchtime 3x ./e2e/
const (
	snapshotContacts = 10000
	snapshotEvents   = 100000
	snapshotWriters  = 8
)

func BenchmarkSnapshot(b *testing.B) {
	dbURL := "sqlite:" + filepath.Join(b.TempDir(), "contacts.db")
	seedStart := time.Now()
	snapshotSeed(b, dbURL)
	b.Logf("seeded %d events over %d contacts through the store in %v", snapshotEvents, snapshotContacts, time.Since(seedStart).Round(time.Millisecond))
	con := startContacts(b, "", contacts.Config{DatabaseURL: dbURL, Common: benchCommon()})
	client := benchHTTPClient(b)
	want := snapshotContactsState(b, client, con.URL)

	var beginning time.Duration
	var replayed []calendar.Contact
	run := func(b *testing.B, start string) (took time.Duration) {
		for b.Loop() {
			reached := make(chan time.Time, 1)
			follow := func(fc *feed.FollowerConfig) {
				fc.OnApplied = func(cp feed.Checkpoint) {
					if cp.Seq == snapshotEvents {
						select {
						case reached <- time.Now():
						default:
						}
					}
				}
			}
			t0 := time.Now()
			cal := startCalendar(b, "", con.URL+"/feed", calendar.Config{Common: benchCommon(), FeedStart: start, Follow: follow})
			var done time.Time
			select {
			case done = <-reached:
			case <-time.After(5 * time.Minute):
				b.Fatalf("%s: checkpoint not at %d within 5 min: %s", start, snapshotEvents, benchSyncStatus(client, cal.URL))
			}
			took += done.Sub(t0)
			b.StopTimer()
			got, err := benchCalendarCopy(client, cal.URL)
			if err == nil {
				err = snapshotSameState(got, want)
			}
			if err == nil && replayed != nil {
				err = snapshotSameCopy(got, replayed)
			}
			if err != nil {
				b.Fatalf("%s: %v", start, err)
			}
			if replayed == nil {
				replayed = got
			}
			cal.Stop()
			b.StartTimer()
		}
		b.ReportMetric(took.Seconds()/float64(b.N), "s/start")
		return took / time.Duration(b.N)
	}
	b.Run("beginning", func(b *testing.B) {
		beginning = run(b, feed.StartBeginning)
		b.ReportMetric(benchRate(snapshotEvents, beginning), "events/s")
	})
	b.Run("snapshot", func(b *testing.B) {
		took := run(b, feed.StartSnapshot)
		if beginning > 0 {
			b.ReportMetric(took.Seconds()/beginning.Seconds(), "ratio")
		} else {
			b.Log("no beginning run in this one (select it too): ratio not reported")
		}
	})
}

// snapshotSeed writes the benchmark's log through contacts' store: every
// contact created, then updated round after round until the log holds
// snapshotEvents events, the last round deleting every tenth contact.
func snapshotSeed(b *testing.B, url string) {
	b.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	store, err := contacts.NewSQLStore(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	rounds := snapshotEvents / snapshotContacts
	ids := make([]int64, snapshotContacts)
	for r := range rounds {
		var wg sync.WaitGroup
		errs := make([]error, snapshotWriters)
		for w := range snapshotWriters {
			wg.Go(func() {
				for i := w; i < snapshotContacts; i += snapshotWriters {
					var err error
					switch {
					case r == 0:
						var c contacts.Contact
						c, err = store.Create(ctx, contacts.Input{Name: fmt.Sprintf("Snap %d", i), Email: fmt.Sprintf("snap%d@example.org", i)})
						ids[i] = c.ID
					case r == rounds-1 && i%10 == 0:
						err = store.Delete(ctx, ids[i], 0)
					default:
						_, err = store.Update(ctx, ids[i], 0, contacts.Input{Name: fmt.Sprintf("Snap %d", i), Email: fmt.Sprintf("snap%d.r%d@example.org", i, r), Phone: fmt.Sprintf("+44 %d", r)})
					}
					if err != nil {
						errs[w] = err
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	head, err := store.Head(ctx)
	if err != nil || head != snapshotEvents {
		b.Fatalf("seeded head %d, %v; want %d", head, err, snapshotEvents)
	}
}

// snapshotContactsState reads every live contact from contacts' API.
func snapshotContactsState(b *testing.B, c *http.Client, base string) map[int64]contacts.Contact {
	b.Helper()
	out := map[int64]contacts.Contact{}
	for offset := 0; ; offset += 1000 {
		var page struct{ Items []contacts.Contact }
		if err := benchGetJSON(c, fmt.Sprintf("%s/api/contacts?limit=1000&offset=%d", base, offset), &page); err != nil {
			b.Fatal(err)
		}
		for _, ct := range page.Items {
			out[ct.ID] = ct
		}
		if len(page.Items) < 1000 {
			break
		}
	}
	if len(out) != snapshotContacts-snapshotContacts/10 {
		b.Fatalf("contacts holds %d live contacts, want %d", len(out), snapshotContacts-snapshotContacts/10)
	}
	return out
}

// snapshotSameState reports how a copy differs from contacts' state: each
// live contact there, equal field by field; every other one deleted.
func snapshotSameState(got []calendar.Contact, want map[int64]contacts.Contact) error {
	if len(got) != snapshotContacts {
		return fmt.Errorf("the copy holds %d contacts, want %d (deleted ones marked)", len(got), snapshotContacts)
	}
	live := 0
	for _, c := range got {
		w, ok := want[c.ID]
		switch {
		case !ok && !c.Deleted:
			return fmt.Errorf("contact %d is alive in the copy, deleted in contacts: %+v", c.ID, c)
		case !ok:
		case c.Deleted || c.Name != w.Name || c.Email != w.Email || c.Phone != w.Phone || c.Version != w.Version || !c.UpdatedAt.Equal(w.UpdatedAt):
			return fmt.Errorf("contact %d: copy %+v, contacts %+v", c.ID, c, w)
		default:
			live++
		}
	}
	if live != len(want) {
		return fmt.Errorf("the copy holds %d of the %d live contacts", live, len(want))
	}
	return nil
}

// snapshotSameCopy reports how two copies differ, field by field.
func snapshotSameCopy(got, ref []calendar.Contact) error {
	byID := func(a, b calendar.Contact) int { return int(a.ID - b.ID) }
	got, ref = slices.Clone(got), slices.Clone(ref)
	slices.SortFunc(got, byID)
	slices.SortFunc(ref, byID)
	if len(got) != len(ref) {
		return fmt.Errorf("copy holds %d contacts, the replayed one %d", len(got), len(ref))
	}
	for i := range got {
		a, r := got[i], ref[i]
		if a.ID != r.ID || a.Name != r.Name || a.Email != r.Email || a.Phone != r.Phone || a.Version != r.Version ||
			a.Deleted != r.Deleted || !a.UpdatedAt.Equal(r.UpdatedAt) || a.Seq != r.Seq {
			return fmt.Errorf("copy %+v, replayed %+v", a, r)
		}
	}
	return nil
}
