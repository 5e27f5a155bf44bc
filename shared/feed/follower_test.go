package feed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// sink is a follower's database: every application of a seq is counted
// in the applying transaction, so a count above one is a doubled event.
type sink struct {
	db   *sqldb.DB
	fail func(e Event) error // called inside the transaction, before the write
	// after, if set, is called after the write, still inside the transaction.
	after func(e Event) error
}

func newSink(t *testing.T) *sink {
	t.Helper()
	db, err := sqldb.Open(context.Background(), sqldbtest.SQLiteURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	schema := fstest.MapFS{"migrations/test_001_applied.sql": {Data: []byte(`CREATE TABLE applied (seq INTEGER PRIMARY KEY, n INTEGER NOT NULL)`)}}
	if err := db.Migrate(context.Background(), schema, Migrations()); err != nil {
		t.Fatal(err)
	}
	return &sink{db: db}
}

func (s *sink) apply(ctx context.Context, tx *sqldb.Tx, e Event) error {
	if s.fail != nil {
		if err := s.fail(e); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO applied (seq, n) VALUES ($1, 1) ON CONFLICT (seq) DO UPDATE SET n = applied.n + 1`, e.Seq); err != nil {
		return err
	}
	if s.after != nil {
		return s.after(e)
	}
	return nil
}

// check fails unless seqs 1…n were each applied exactly once.
func (s *sink) check(t *testing.T, n int64) {
	t.Helper()
	var count, total, maxN, maxSeq int64
	err := s.db.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(n), 0), coalesce(max(n), 0), coalesce(max(seq), 0) FROM applied`).Scan(&count, &total, &maxN, &maxSeq)
	if err != nil {
		t.Fatal(err)
	}
	if count != n || total != n || maxSeq != n || (n > 0 && maxN != 1) {
		t.Fatalf("applied %d distinct seqs (%d applications, max %d per seq, highest %d), want 1…%d once each", count, total, maxN, maxSeq, n)
	}
}

type followTest struct {
	t    *testing.T
	log  *memLog
	pub  *Publisher
	srv  *httptest.Server
	sink *sink
	// mode, when set, replaces the feed's answer (failure injection).
	mode atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

func newFollowTest(t *testing.T, pageSize int) *followTest {
	ft := &followTest{t: t, log: &memLog{}, sink: newSink(t)}
	pub, inner := newTestPublisher(t, ft.log, "", pageSize)
	ft.pub = pub
	inner.Close()
	mux := routes(pub)
	ft.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := ft.mode.Load(); m != nil && (*m)(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(ft.srv.Close)
	return ft
}

func (ft *followTest) add(n int) {
	ft.log.add(n)
	ft.log.commits.Notify()
}

func (ft *followTest) setMode(m func(w http.ResponseWriter, r *http.Request) bool) {
	if m == nil {
		ft.mode.Store(nil)
		return
	}
	ft.mode.Store(&m)
}

// start runs a follower until the returned stop is called.
func (ft *followTest) start(opts ...func(*FollowerConfig)) (*Follower, func()) {
	ft.t.Helper()
	cfg := FollowerConfig{
		Name: "contacts", URL: ft.srv.URL + "/feed", DB: ft.sink.db, Apply: ft.sink.apply,
		PollInterval: 20 * time.Millisecond, Wait: 5 * time.Second, Timeout: 2 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	f, err := NewFollower(context.Background(), cfg)
	if err != nil {
		ft.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	ft.t.Cleanup(stop)
	return f, stop
}

func (ft *followTest) waitSeq(f *Follower, seq int64) {
	ft.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for f.Status().CheckpointSeq < seq {
		if time.Now().After(deadline) {
			ft.t.Fatalf("checkpoint %d after 20 s, want %d; status %+v", f.Status().CheckpointSeq, seq, f.Status())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestFollowFromScratchThenLive(t *testing.T) {
	ft := newFollowTest(t, 3)
	ft.add(10)
	f, _ := ft.start()
	ft.waitSeq(f, 10)
	ft.sink.check(t, 10)
	cp, _ := f.Checkpoint(context.Background())
	if cp.Seq != 10 || cp.Page != ft.srv.URL+"/feed" {
		t.Errorf("checkpoint %+v, want 10 on /feed", cp)
	}
	waitFor(t, func() bool { return ft.pub.waiting.Load() == 1 }) // it long-polls
	for range 5 {
		ft.add(2)
	}
	ft.waitSeq(f, 20)
	ft.sink.check(t, 20)
	if s := f.Status(); s.Lag != 0 || s.HeadSeq != 20 || !s.LongPoll || s.LastPoll.IsZero() {
		t.Errorf("status %+v", s)
	}
}

func TestFollowResumesInsideAnArchive(t *testing.T) {
	ft := newFollowTest(t, 5)
	ft.add(12)
	var stopAt atomic.Int64
	stopAt.Store(7)
	var requests []string
	var mu sync.Mutex
	ft.setMode(func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		requests = append(requests, r.URL.Path)
		mu.Unlock()
		return false
	})
	// Apply only up to seq 7 (inside archive page 2), then stop.
	ft.sink.fail = func(e Event) error {
		if e.Seq > stopAt.Load() {
			return errors.New("not yet")
		}
		return nil
	}
	f, stop := ft.start()
	ft.waitSeq(f, 7)
	stop()
	cp, _ := f.Checkpoint(context.Background())
	if cp.Seq != 7 || !strings.HasSuffix(cp.Page, "/feed/archive/2") {
		t.Fatalf("checkpoint %+v, want 7 on archive 2", cp)
	}
	mu.Lock()
	requests = nil
	mu.Unlock()
	ft.sink.fail = nil
	f, _ = ft.start()
	ft.waitSeq(f, 12)
	ft.sink.check(t, 12)
	mu.Lock()
	defer mu.Unlock()
	if len(requests) == 0 || requests[0] != "/feed/archive/2" || strings.Contains(strings.Join(requests, " "), "archive/1") {
		t.Errorf("resumed with requests %v, want to start at archive 2 and never read archive 1", requests)
	}
}

func TestFollowWalksBackToCloseAGap(t *testing.T) {
	for _, extra := range []int{9, 10} { // 10 leaves /feed empty, right after a full page
		t.Run(fmt.Sprint(extra), func(t *testing.T) {
			ft := newFollowTest(t, 3)
			ft.add(5)
			f, stop := ft.start()
			ft.waitSeq(f, 5)
			stop()
			ft.add(extra) // three archive pages fill while it is stopped
			var order []int64
			ft.sink.after = func(e Event) error { order = append(order, e.Seq); return nil }
			f, _ = ft.start()
			ft.waitSeq(f, int64(5+extra))
			ft.sink.check(t, int64(5+extra))
			for i, seq := range order {
				if seq != int64(6+i) {
					t.Fatalf("applied %v: not in order", order)
				}
			}
		})
	}
}

func TestFollowStopsAtAPoisonedEntry(t *testing.T) {
	ft := newFollowTest(t, 50)
	ft.add(10)
	var poisoned atomic.Bool
	poisoned.Store(true)
	ft.sink.fail = func(e Event) error {
		if e.Seq == 7 && poisoned.Load() {
			return errors.New("no such participant")
		}
		return nil
	}
	f, _ := ft.start()
	waitFor(t, func() bool { return f.Status().FailingSeq == 7 && f.Status().Errors >= 3 })
	s := f.Status()
	if s.CheckpointSeq != 6 || !strings.Contains(s.LastError, "seq 7") || !strings.Contains(s.LastError, "no such participant") || s.Lag != 4 {
		t.Fatalf("status %+v: want stopped at 7 with its error and lag 4", s)
	}
	ft.sink.check(t, 6)
	poisoned.Store(false)
	ft.waitSeq(f, 10)
	ft.sink.check(t, 10)
	if s := f.Status(); s.LastError != "" || s.FailingSeq != 0 {
		t.Errorf("after recovery status %+v", s)
	}
}

// TestFollowSurvivesABadPublisher: down, 500, garbage, a truncated body and
// a hang past the timeout each show as errors; when the publisher is well
// again the follower catches up by itself.
func TestFollowSurvivesABadPublisher(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	for _, tc := range []struct {
		name string
		mode func(w http.ResponseWriter, r *http.Request) bool
		want string
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) bool { http.Error(w, "db down", 500); return true }, "status 500"},
		{"garbage", func(w http.ResponseWriter, r *http.Request) bool {
			w.Write([]byte("<html><body>not a feed"))
			return true
		}, "parse feed"},
		{"truncated", func(w http.ResponseWriter, r *http.Request) bool {
			rec := httptest.NewRecorder()
			r.Header.Del("If-None-Match")
			r.Header.Del("Prefer")
			ft := r.Context().Value(ftKey{}).(*followTest)
			routes(ft.pub).ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.Write(body[:len(body)/2])
			return true
		}, "unexpected EOF"},
		{"hang", func(w http.ResponseWriter, r *http.Request) bool {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return true
		}, "deadline exceeded"},
		{"down", nil, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ft := newFollowTest(t, 4)
			ft.add(6)
			url := ft.srv.URL
			if tc.mode != nil {
				mode := tc.mode
				ft.setMode(func(w http.ResponseWriter, r *http.Request) bool {
					return mode(w, r.WithContext(context.WithValue(r.Context(), ftKey{}, ft)))
				})
			} else {
				ft.srv.Close() // nobody listens there now
			}
			f, _ := ft.start(func(c *FollowerConfig) {
				c.URL = url + "/feed"
				c.Timeout = 200 * time.Millisecond
			})
			waitFor(t, func() bool { return f.Status().Errors >= 2 })
			if s := f.Status(); !strings.Contains(s.LastError, tc.want) || s.CheckpointSeq != 0 {
				t.Fatalf("status %+v, want an error with %q", s, tc.want)
			}
			if tc.mode == nil {
				return // a closed httptest server cannot come back on its port
			}
			ft.setMode(nil)
			ft.add(3)
			ft.waitSeq(f, 9)
			ft.sink.check(t, 9)
		})
	}
}

type ftKey struct{}

// TestFollowCrashSafety fails the apply step at random points — before the
// write, after it and before commit, and after commit (the follower is
// killed) — over 100 rounds with restarts: nothing is lost or doubled.
func TestFollowCrashSafety(t *testing.T) {
	ft := newFollowTest(t, 7)
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	// oneIn reports true, at random, once in n calls.
	oneIn := func(n int) bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(n) == 0
	}
	ft.sink.fail = func(e Event) error {
		if oneIn(10) {
			return errors.New("crash before the write")
		}
		return nil
	}
	ft.sink.after = func(e Event) error {
		if oneIn(10) {
			return errors.New("crash after the write, before commit")
		}
		return nil
	}
	total := 0
	for round := range 100 {
		n := 1 + rng.IntN(8)
		ft.add(n)
		total += n
		crashed := make(chan struct{})
		var once sync.Once
		f, stop := ft.start(func(c *FollowerConfig) {
			c.OnApplied = func(Checkpoint) {
				if oneIn(3) { // crash after commit: the process dies here
					once.Do(func() { close(crashed) })
				}
			}
		})
		deadline := time.After(20 * time.Second)
	wait:
		for f.Status().CheckpointSeq < int64(total) {
			select {
			case <-crashed:
				break wait
			case <-deadline:
				t.Fatalf("round %d: stuck at %+v", round, f.Status())
			case <-time.After(time.Millisecond):
			}
		}
		stop()
	}
	f, _ := ft.start()
	ft.sink.fail, ft.sink.after = nil, nil
	ft.waitSeq(f, int64(total))
	ft.sink.check(t, int64(total))
}

// TestFollowLongPollsFromTheStart: after its first plain fetch the follower
// long-polls at once instead of waiting PollInterval.
func TestFollowLongPollsFromTheStart(t *testing.T) {
	ft := newFollowTest(t, 50)
	f, _ := ft.start(func(c *FollowerConfig) { c.PollInterval = time.Hour })
	waitFor(t, func() bool { return ft.pub.waiting.Load() == 1 })
	ft.add(1)
	ft.waitSeq(f, 1)
	ft.sink.check(t, 1)
}

// TestFollowPrefetchFails: the next archive page is fetched while the one
// before it applies (the apply of page 3 waits until page 4 is asked for),
// and that prefetch failing is handled as a fetch failing: a 500 is
// retried from the checkpoint's page, a 404 or 410 reads the feed from the
// top and walks back. Either way every event is applied exactly once.
func TestFollowPrefetchFails(t *testing.T) {
	for _, code := range []int{http.StatusInternalServerError, http.StatusNotFound, http.StatusGone} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			ft := newFollowTest(t, 5)
			ft.add(42) // 8 archive pages of 5, and 2 events in /feed
			asked := make(chan struct{})
			var (
				mu         sync.Mutex
				failed     bool
				afterwards []string // the requests after the failed one
			)
			ft.setMode(func(w http.ResponseWriter, r *http.Request) bool {
				mu.Lock()
				defer mu.Unlock()
				if failed {
					afterwards = append(afterwards, r.URL.Path)
					return false
				}
				if r.URL.Path == "/feed/archive/4" {
					failed = true
					close(asked)
					http.Error(w, "injected", code)
					return true
				}
				return false
			})
			var overlapped atomic.Bool
			ft.sink.fail = func(e Event) error {
				if e.Seq == 11 && !overlapped.Load() { // the first event of page 3
					select {
					case <-asked:
						overlapped.Store(true)
					case <-time.After(10 * time.Second):
						t.Error("page 4 was not asked for while page 3 applied")
						overlapped.Store(true)
					}
				}
				return nil
			}
			f, _ := ft.start()
			ft.waitSeq(f, 42)
			ft.sink.check(t, 42)
			if s := f.Status(); s.Errors == 0 && code == http.StatusInternalServerError {
				t.Errorf("status %+v: the failed prefetch was not reported", s)
			}
			mu.Lock()
			defer mu.Unlock()
			want := "/feed/archive/3" // retried from the checkpoint's page
			if code != http.StatusInternalServerError {
				want = "/feed" // gone: from the top
			}
			if len(afterwards) == 0 || afterwards[0] != want {
				t.Errorf("requests after the failed prefetch: %v, want %s first", afterwards, want)
			}
		})
	}
}

// TestFollowPrefetchesTwoPagesAhead: while page 1 applies, pages 2 and 3
// are fetched (the apply waits for page 3 to be asked for), and page 4 is
// not (the apply gives it 100 ms to be asked for, and fails if it is): the
// prefetch stays within two pages of the apply.
func TestFollowPrefetchesTwoPagesAhead(t *testing.T) {
	ft := newFollowTest(t, 5)
	ft.add(30)
	third, fourth := make(chan struct{}), make(chan struct{})
	var once3, once4 sync.Once
	ft.setMode(func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case "/feed/archive/3":
			once3.Do(func() { close(third) })
		case "/feed/archive/4":
			once4.Do(func() { close(fourth) })
		}
		return false
	})
	ft.sink.fail = func(e Event) error {
		switch e.Seq {
		case 1:
			select {
			case <-third:
			case <-time.After(10 * time.Second):
				t.Error("page 3 was not asked for while page 1 applied")
			}
		case 5: // still in page 1's transaction
			select {
			case <-fourth:
				t.Error("page 4 was asked for while page 1 applied: more than two pages ahead")
			case <-time.After(100 * time.Millisecond):
			}
		}
		return nil
	}
	f, _ := ft.start()
	ft.waitSeq(f, 30)
	ft.sink.check(t, 30)
}
