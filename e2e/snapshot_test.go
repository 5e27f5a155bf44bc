package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
