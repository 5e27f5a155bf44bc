package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
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

// probe watches calendar's follower: the documents it requests, the order
// it applies seqs in, and — in a table written in the applying transaction,
// so only committed applications count — how often each seq was applied.
type probe struct {
	mu       sync.Mutex
	requests []string
	order    []int64
	fail     atomic.Pointer[func(feed.Event) error] // before the write
	after    atomic.Pointer[func(feed.Event) error] // after it, before commit
}

func (p *probe) follow(fc *feed.FollowerConfig) {
	fc.Client = &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		p.mu.Lock()
		p.requests = append(p.requests, r.URL.Path)
		p.mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})}
	apply := fc.Apply
	fc.Apply = func(ctx context.Context, tx *sqldb.Tx, e feed.Event) error {
		if f := p.fail.Load(); f != nil {
			if err := (*f)(e); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS test_applied (seq BIGINT PRIMARY KEY, n BIGINT NOT NULL)`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO test_applied (seq, n) VALUES ($1, 1) ON CONFLICT (seq) DO UPDATE SET n = test_applied.n + 1`, e.Seq); err != nil {
			return err
		}
		if err := apply(ctx, tx, e); err != nil {
			return err
		}
		if f := p.after.Load(); f != nil {
			if err := (*f)(e); err != nil {
				return err
			}
		}
		p.mu.Lock()
		p.order = append(p.order, e.Seq)
		p.mu.Unlock()
		return nil
	}
}

func (p *probe) failWith(f func(feed.Event) error) {
	if f == nil {
		p.fail.Store(nil)
		return
	}
	p.fail.Store(&f)
}

func (p *probe) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests, p.order = nil, nil
}

// checkOnce fails unless seqs 1…n were each applied exactly once.
func checkOnce(t *testing.T, databaseURL string, n int64) {
	t.Helper()
	db, err := sqldb.Open(context.Background(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var count, total, highest int64
	if err := db.QueryRow(context.Background(), `SELECT count(*), sum(n), max(seq) FROM test_applied`).Scan(&count, &total, &highest); err != nil {
		t.Fatal(err)
	}
	if count != n || total != n || highest != n {
		t.Fatalf("%d seqs applied %d times in all, highest %d: want 1…%d once each", count, total, highest, n)
	}
}

func createN(t *testing.T, c *api, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		c.Must(201, "POST", "/api/contacts", map[string]string{"name": fmt.Sprint("Person ", i), "email": fmt.Sprintf("p%d@example.org", i)}, nil)
	}
}

// contactsWith starts contacts with n contacts created through its API.
func contactsWith(t *testing.T, n int) (*service, *api) {
	t.Helper()
	con := startContacts(t, "", contacts.Config{})
	capi := newAPI(t, con.URL)
	createN(t, capi, 0, n)
	return con, capi
}

// syncUntil runs a calendar on database db, following con's feed through
// probe p, until its sync status meets done, then stops it. It replays
// the archives (FEED_START=beginning): these tests count each seq's
// applications.
func syncUntil(t *testing.T, con, db string, p *probe, done func(syncStatus) bool) {
	t.Helper()
	cal := startCalendar(t, "", con+"/feed", calendar.Config{DatabaseURL: db, Follow: p.follow, FeedStart: feed.StartBeginning})
	waitSync(t, newAPI(t, cal.URL), 20*time.Second, done)
	cal.Stop()
}

// TestResumeInsideAnArchive: a calendar stopped with its checkpoint inside
// archive page 2 resumes there and re-applies nothing.
func TestResumeInsideAnArchive(t *testing.T) {
	con, _ := contactsWith(t, 120)
	db := sqldbtest.SQLiteURL(t)
	p := &probe{}
	p.failWith(func(e feed.Event) error {
		if e.Seq > 75 {
			return errors.New("stop here")
		}
		return nil
	})
	syncUntil(t, con.URL, db, p, func(s syncStatus) bool { return s.CheckpointSeq == 75 && s.FailingSeq == 76 })

	p.failWith(nil)
	p.reset()
	syncUntil(t, con.URL, db, p, func(s syncStatus) bool { return s.CheckpointSeq == 120 })
	p.mu.Lock()
	reqs := p.requests
	p.mu.Unlock()
	if len(reqs) == 0 || reqs[0] != "/feed/archive/2" || strings.Contains(strings.Join(reqs, " "), "archive/1 ") {
		t.Errorf("requests after restart %v: want to start at /feed/archive/2", reqs)
	}
	checkOnce(t, db, 120)
}

// TestWalkBackAfterThreePages: a calendar stopped while three archive pages
// filled walks prev-archive back and closes the gap in order.
func TestWalkBackAfterThreePages(t *testing.T) {
	con, capi := contactsWith(t, 30)
	db := sqldbtest.SQLiteURL(t)
	p := &probe{}
	syncUntil(t, con.URL, db, p, func(s syncStatus) bool { return s.CheckpointSeq == 30 })

	createN(t, capi, 30, 150) // pages 1–3 fill: seq 180 is in /feed, 31–150 behind it
	p.reset()
	syncUntil(t, con.URL, db, p, func(s syncStatus) bool { return s.CheckpointSeq == 180 })
	p.mu.Lock()
	defer p.mu.Unlock()
	walk := strings.Join(p.requests, " ")
	if !strings.HasPrefix(walk, "/feed /feed/archive/3 /feed/archive/2 /feed/archive/1") {
		t.Errorf("requests %v: want /feed, then archives 3, 2, 1", p.requests)
	}
	for i, seq := range p.order {
		if seq != int64(31+i) {
			t.Fatalf("applied %v…: not 31, 32, … in order", p.order[:min(len(p.order), 10)])
		}
	}
	checkOnce(t, db, 180)
}

// TestContactsDownAndBack: calendar reports contacts being down, backs off,
// and catches up by itself when contacts returns.
func TestContactsDownAndBack(t *testing.T) {
	conDB := sqldbtest.SQLiteURL(t)
	con := startContacts(t, "", contacts.Config{DatabaseURL: conDB})
	addr := strings.TrimPrefix(con.URL, "http://")
	capi := newAPI(t, con.URL)
	createN(t, capi, 0, 5)
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{Follow: func(fc *feed.FollowerConfig) {
		fc.MinBackoff, fc.MaxBackoff = 10*time.Millisecond, 200*time.Millisecond
	}})
	kapi := newAPI(t, cal.URL)
	waitSync(t, kapi, 20*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == 5 })

	con.Stop()
	down := waitSync(t, kapi, 20*time.Second, func(s syncStatus) bool { return s.Errors >= 2 })
	if !strings.Contains(down.LastError, "connection refused") {
		t.Errorf("last error %q: want the refused connection", down.LastError)
	}
	resp, err := http.Get(cal.URL + "/contacts")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "connection refused") {
		t.Error("the contacts page does not show the sync error")
	}

	con = startContacts(t, addr, contacts.Config{DatabaseURL: conDB})
	createN(t, capi, 5, 5)
	up := waitSync(t, kapi, 20*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == 10 && s.LastError == "" })
	if up.Lag != 0 {
		t.Errorf("after recovery: %+v", up)
	}
}

// TestPoisonedEntry: an entry calendar cannot apply stops it visibly — in
// /api/sync, the HTML and metrics — and it resumes once the entry applies.
func TestPoisonedEntry(t *testing.T) {
	con := startContacts(t, "", contacts.Config{})
	capi := newAPI(t, con.URL)
	p := &probe{}
	p.failWith(func(e feed.Event) error {
		if strings.Contains(string(e.Data), "Poison") {
			return errors.New("cannot apply this contact")
		}
		return nil
	})
	// Replaying the archives, events apply a page at a time and the ones
	// before the poisoned entry commit. (A bootstrap from the snapshot is
	// all or nothing: the calendar may meet the six events there if it
	// starts after they are written.)
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{FeedStart: feed.StartBeginning, Follow: func(fc *feed.FollowerConfig) {
		p.follow(fc)
		fc.MinBackoff, fc.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	}})
	kapi := newAPI(t, cal.URL)
	createN(t, capi, 0, 3)
	capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Poison Ivy", "email": "ivy@example.org"}, nil)
	createN(t, capi, 3, 2)
	// Until a retry has read the page again, the head it knows may be the
	// fifth event's: the sixth was written while it failed.
	s := waitSync(t, kapi, 20*time.Second, func(s syncStatus) bool { return s.FailingSeq == 4 && s.Errors >= 2 && s.HeadSeq == 6 })
	if s.CheckpointSeq != 3 || s.Lag != 3 || !strings.Contains(s.LastError, "seq 4") || !strings.Contains(s.LastError, "cannot apply") {
		t.Fatalf("status %+v: want stopped before seq 4 with its error", s)
	}
	for path, want := range map[string]string{"/contacts": "cannot apply this contact", "/metrics": "syndic_follower_failing_seq 4"} {
		resp, err := http.Get(cal.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s does not show %q", path, want)
		}
	}
	p.failWith(nil)
	waitSync(t, kapi, 20*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == 6 && s.LastError == "" && s.FailingSeq == 0 })
}

// TestCrashSafety makes calendar's apply step fail at random points —
// before the copy is written, after it and before commit, and after commit
// (the service is stopped there) — over 100 rounds of contact changes and
// restarts: the copy ends exact and no event is applied twice. It replays
// the archives (FEED_START=beginning), so that every seq is applied.
func TestCrashSafety(t *testing.T) {
	con := startContacts(t, "", contacts.Config{FeedPageSize: 20})
	capi := newAPI(t, con.URL)
	db := sqldbtest.SQLiteURL(t)
	rng := rand.New(rand.NewPCG(7, 7))
	var mu sync.Mutex
	chance := func(n int) bool { mu.Lock(); defer mu.Unlock(); return rng.IntN(n) == 0 }
	var before, beforeCommit, afterCommit atomic.Int64 // failures injected
	p := &probe{}
	p.failWith(func(feed.Event) error {
		if chance(8) {
			before.Add(1)
			return errors.New("crash before the write")
		}
		return nil
	})
	after := func(feed.Event) error {
		if chance(8) {
			beforeCommit.Add(1)
			return errors.New("crash after the write, before commit")
		}
		return nil
	}
	p.after.Store(&after)
	ids := map[int64]bool{}
	for round := range 100 {
		for id, alive := range churn(t, capi, 1+int(rng.IntN(6)), uint64(round)) {
			ids[id] = alive
		}
		crashed := make(chan struct{})
		var once sync.Once
		cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{DatabaseURL: db, FeedStart: feed.StartBeginning, Follow: func(fc *feed.FollowerConfig) {
			p.follow(fc)
			fc.MinBackoff, fc.MaxBackoff = time.Millisecond, 10*time.Millisecond
			fc.OnApplied = func(feed.Checkpoint) {
				if chance(3) {
					once.Do(func() { afterCommit.Add(1); close(crashed) }) // crash after commit
				}
			}
		}})
		h := head(t, con.URL)
		kapi := newAPI(t, cal.URL)
		deadline := time.Now().Add(20 * time.Second)
	wait:
		for {
			var s syncStatus
			kapi.Must(200, "GET", "/api/sync", nil, &s)
			select {
			case <-crashed:
				break wait
			default:
			}
			if s.CheckpointSeq == h {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: stuck at %+v", round, s)
			}
			time.Sleep(time.Millisecond)
		}
		cal.Stop()
	}
	p.failWith(nil)
	p.after.Store(nil)
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{DatabaseURL: db, Follow: p.follow, FeedStart: feed.StartBeginning})
	kapi := newAPI(t, cal.URL)
	h := head(t, con.URL)
	waitSync(t, kapi, 30*time.Second, func(s syncStatus) bool { return s.CheckpointSeq == h })
	sameState(t, capi, kapi, ids)
	cal.Stop()
	checkOnce(t, db, h)
	t.Logf("%d events; failures injected: %d before the write, %d before commit, %d after commit", h, before.Load(), beforeCommit.Load(), afterCommit.Load())
	if before.Load() == 0 || beforeCommit.Load() == 0 || afterCommit.Load() < 10 {
		t.Error("too few failures injected to mean anything")
	}
}
