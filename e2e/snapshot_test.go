package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/shared/feed"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// statusLog records the path and status of each answer a follower gets.
type statusLog struct {
	mu  sync.Mutex
	got []string
}

func (l *statusLog) follow(fc *feed.FollowerConfig) {
	fc.Client = &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err == nil {
			l.mu.Lock()
			l.got = append(l.got, fmt.Sprintf("%d %s", resp.StatusCode, r.URL.Path))
			l.mu.Unlock()
		}
		return resp, err
	})}
}

func (l *statusLog) answers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// TestSnapshotRebootstrapAfterRetention: calendar is stopped while
// contacts changes a lot and its retention drops the archive pages
// calendar would have resumed from. Restarted, calendar meets 410 Gone,
// bootstraps again from the snapshot and goes on; its copy then equals
// contacts' state field by field — contacts deleted meanwhile are deleted
// in the copy — and equals, seq included, the copy of a second calendar
// that followed every event as it happened.
func TestSnapshotRebootstrapAfterRetention(t *testing.T) {
	t.Parallel()
	con := startContacts(t, "", contacts.Config{FeedPageSize: 5, FeedRetainPages: 2})
	capi := newAPI(t, con.URL)
	create := func(i int) contact {
		var c contact
		capi.Must(201, "POST", "/api/contacts", map[string]string{"name": fmt.Sprintf("Person %d", i), "email": fmt.Sprintf("p%d@example.org", i)}, &c)
		return c
	}
	var people []contact
	for i := range 8 {
		people = append(people, create(i))
	}
	awayURL := sqldbtest.SQLiteURL(t)
	var log statusLog
	away := startCalendar(t, "", con.URL+"/feed", calendar.Config{DatabaseURL: awayURL, Follow: log.follow})
	stayed := startCalendar(t, "", con.URL+"/feed", calendar.Config{FeedStart: feed.StartBeginning})
	waitSync(t, newAPI(t, away.URL), 10*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == 8 })
	away.Stop()

	// While it is away: every contact changed or deleted, new ones, more
	// than the two pages contacts keeps.
	for i, p := range people {
		if i%3 == 0 {
			capi.Must(204, "DELETE", contactPath(p.ID), nil, nil)
			continue
		}
		capi.Must(200, "PUT", contactPath(p.ID), map[string]string{"name": p.Name + " (moved)", "email": p.Email, "phone": "+1 555"}, nil, "If-Match", `"1"`)
	}
	for i := 8; i < 20; i++ {
		c := create(i)
		if i%4 == 0 {
			capi.Must(204, "DELETE", contactPath(c.ID), nil, nil)
		}
	}
	// head 8 + 8 + 12 + 3 = 31: six full pages, 5 and 6 kept.
	const head = 31
	resp, _ := request(t, freshClient(), "GET", con.URL+"/feed/archive/2", "", "")
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("archive 2 with 6 full pages and 2 kept: status %d, want 410", resp.StatusCode)
	}

	away = startCalendar(t, "", con.URL+"/feed", calendar.Config{DatabaseURL: awayURL, Follow: log.follow})
	kapi := newAPI(t, away.URL)
	waitSync(t, kapi, 10*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == head && s.Lag == 0 })
	sapi := newAPI(t, stayed.URL)
	waitSync(t, sapi, 10*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == head })

	answers := log.answers()
	gone := slices.IndexFunc(answers, func(a string) bool { return a[:3] == "410" })
	if gone < 0 || !slices.Contains(answers[gone:], "200 /feed/snapshot") {
		t.Errorf("answers %v: want a 410 and then the snapshot", answers)
	}
	if n := metrics(t, away.URL)["syndic_follower_bootstraps_total"]; n != 1 {
		t.Errorf("follower_bootstraps = %v in the restarted calendar, want 1 (after the 410)", n)
	}

	// The copy equals contacts' state field by field…
	var got, ref struct{ Items []calendar.Contact }
	kapi.Must(200, "GET", "/api/contacts", nil, &got)
	sapi.Must(200, "GET", "/api/contacts", nil, &ref)
	if deleted := sameAsContacts(t, capi, got.Items); deleted != 3+3 {
		t.Errorf("the copy holds %d deleted contacts, want 6", deleted)
	}
	// …and the copy of a calendar that never left, seq included.
	sortByID := func(cs []calendar.Contact) {
		slices.SortFunc(cs, func(a, b calendar.Contact) int { return int(a.ID - b.ID) })
	}
	sortByID(got.Items)
	sortByID(ref.Items)
	if len(got.Items) != len(ref.Items) {
		t.Fatalf("re-bootstrapped copy holds %d contacts, the one that followed throughout %d", len(got.Items), len(ref.Items))
	}
	for i := range got.Items {
		if a, b := got.Items[i], ref.Items[i]; a.ID != b.ID || a.Name != b.Name || a.Email != b.Email || a.Phone != b.Phone ||
			a.Version != b.Version || a.Deleted != b.Deleted || !a.UpdatedAt.Equal(b.UpdatedAt) || a.Seq != b.Seq {
			t.Errorf("re-bootstrapped %+v, followed throughout %+v", a, b)
		}
	}
}

// sameAsContacts fails t unless local (calendar's copy) holds every live
// contact of contacts (capi) equal field by field, and any other contact
// marked deleted; it returns how many are.
func sameAsContacts(t *testing.T, capi *api, local []calendar.Contact) (deleted int) {
	t.Helper()
	var live struct{ Items []contacts.Contact }
	capi.Must(200, "GET", "/api/contacts?limit=1000", nil, &live)
	byID := map[int64]contacts.Contact{}
	for _, c := range live.Items {
		byID[c.ID] = c
	}
	for _, c := range local {
		w, ok := byID[c.ID]
		switch {
		case !ok && !c.Deleted:
			t.Errorf("contact %d is in the copy, alive, but deleted in contacts: %+v", c.ID, c)
		case !ok:
			deleted++
		case c.Deleted || c.Name != w.Name || c.Email != w.Email || c.Phone != w.Phone || c.Version != w.Version || !c.UpdatedAt.Equal(w.UpdatedAt):
			t.Errorf("contact %d: copy %+v, contacts %+v", c.ID, c, w)
		}
		delete(byID, c.ID)
	}
	if len(byID) > 0 {
		t.Errorf("the copy lacks %d live contacts", len(byID))
	}
	return deleted
}

// TestSnapshotBootstrapFailsWhole: calendar's bootstrap fails part way
// (its apply step errs after writing 20 contacts, inside the transaction,
// as a crash before commit would leave it): nothing of it is kept — no
// contact, no checkpoint — and the retry bootstraps cleanly to contacts'
// state.
func TestSnapshotBootstrapFailsWhole(t *testing.T) {
	t.Parallel()
	con := startContacts(t, "", contacts.Config{FeedPageSize: 5})
	capi := newAPI(t, con.URL)
	for i := range 30 {
		var c contact
		capi.Must(201, "POST", "/api/contacts", map[string]string{"name": fmt.Sprintf("Person %d", i), "email": fmt.Sprintf("p%d@example.org", i)}, &c)
		if i%4 == 0 {
			capi.Must(204, "DELETE", contactPath(c.ID), nil, nil)
		}
	}
	var failing atomic.Bool
	failing.Store(true)
	var applied atomic.Int64
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{Follow: func(fc *feed.FollowerConfig) {
		apply := fc.Apply
		fc.MinBackoff, fc.MaxBackoff = 50*time.Millisecond, 50*time.Millisecond
		fc.Apply = func(ctx context.Context, tx *sqldb.Tx, e feed.Event) error {
			if err := apply(ctx, tx, e); err != nil {
				return err
			}
			if applied.Add(1) == 20 && failing.Load() {
				return errors.New("crash before commit")
			}
			return nil
		}
	}})
	kapi := newAPI(t, cal.URL)
	s := waitSync(t, kapi, 10*time.Second, func(s syncStatus) bool { return s.Errors >= 1 })
	if s.CheckpointSeq != 0 || !strings.Contains(s.LastError, "bootstrap from the snapshot") {
		t.Errorf("after the failed bootstrap: %+v, want checkpoint 0 and the bootstrap's error", s)
	}
	var got struct{ Items []calendar.Contact }
	kapi.Must(200, "GET", "/api/contacts", nil, &got)
	if len(got.Items) != 0 {
		t.Fatalf("after the failed bootstrap the copy holds %d contacts, want none", len(got.Items))
	}
	failing.Store(false)
	waitSync(t, kapi, 10*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == 38 && s.LastError == "" })
	kapi.Must(200, "GET", "/api/contacts", nil, &got)
	if deleted := sameAsContacts(t, capi, got.Items); deleted != 8 || len(got.Items) != 30 {
		t.Errorf("the copy holds %d contacts, %d deleted: want 30, 8 deleted", len(got.Items), deleted)
	}
}

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
