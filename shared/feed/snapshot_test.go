package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/metrics"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// subjectLog is an event log of subjects (contacts, say) that can also
// answer the snapshot: a real Snapshotter, held in memory.
type subjectLog struct {
	memLog
}

type subject struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Version int64  `json:"version"`
}

// put appends an event of type typ for subject s.
func (l *subjectLog) put(typ string, s subject) {
	l.mu.Lock()
	seq := int64(len(l.events) + 1)
	data, _ := json.Marshal(s)
	l.events = append(l.events, Event{Seq: seq, Type: typ, Title: s.Name, Link: fmt.Sprintf("/s/%d", s.ID), Data: data,
		Time: time.Date(2026, 12, 1, 0, 0, 0, int(seq)*1e6, time.UTC)})
	l.mu.Unlock()
	l.commits.Notify()
}

func (l *subjectLog) Snapshot(_ context.Context, asOf int64, after string, limit int) ([]Event, string, error) {
	var afterID int64
	if after != "" {
		var err error
		if afterID, err = strconv.ParseInt(after, 10, 64); err != nil {
			return nil, "", derrors.Problems{"after": "not a subject id"}
		}
	}
	l.mu.Lock()
	latest := map[int64]Event{}
	for _, e := range l.events {
		if id := subjectOf(e).ID; e.Seq <= asOf && id > afterID {
			latest[id] = e
		}
	}
	l.mu.Unlock()
	ids := slices.Sorted(maps.Keys(latest))
	if len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]Event, 0, len(ids))
	for _, id := range ids {
		out = append(out, latest[id])
	}
	if len(ids) == 0 {
		return out, "", nil
	}
	return out, strconv.FormatInt(ids[len(ids)-1], 10), nil
}

func subjectOf(e Event) subject {
	var s subject
	_ = json.Unmarshal(e.Data, &s)
	return s
}

// state is what a replay of the whole log leaves: each subject's latest
// event (type, data and seq), deleted ones included.
func (l *subjectLog) state() map[int64]stateRow {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int64]stateRow{}
	for _, e := range l.events {
		s := subjectOf(e)
		out[s.ID] = stateRow{Name: s.Name, Version: s.Version, Deleted: e.Type == "deleted", Seq: e.Seq}
	}
	return out
}

// churn creates n subjects from id first, updates each twice and deletes
// every third.
func (l *subjectLog) churn(first, n int64) {
	for id := first; id < first+n; id++ {
		l.put("created", subject{id, fmt.Sprintf("s%d", id), 1})
	}
	for v := int64(2); v <= 3; v++ {
		for id := first; id < first+n; id++ {
			l.put("updated", subject{id, fmt.Sprintf("s%d v%d", id, v), v})
		}
	}
	for id := first; id < first+n; id += 3 {
		l.put("deleted", subject{id, fmt.Sprintf("s%d v3", id), 4})
	}
}

type stateRow struct {
	Name    string
	Version int64
	Deleted bool
	Seq     int64
}

// stateSink is a follower's copy of the subjects, applied as calendar
// applies contacts: each event upserts its subject.
type stateSink struct {
	db   *sqldb.DB
	fail atomic.Pointer[func(Event) error]
}

func newStateSink(t *testing.T) *stateSink {
	t.Helper()
	db, err := sqldb.Open(context.Background(), sqldbtest.SQLiteURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	schema := fstest.MapFS{"migrations/test_001_state.sql": {Data: []byte(
		`CREATE TABLE state (id INTEGER PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL, deleted BOOLEAN NOT NULL, seq INTEGER NOT NULL)`)}}
	if err := db.Migrate(context.Background(), schema, Migrations()); err != nil {
		t.Fatal(err)
	}
	return &stateSink{db: db}
}

func (s *stateSink) apply(ctx context.Context, tx *sqldb.Tx, e Event) error {
	if f := s.fail.Load(); f != nil {
		if err := (*f)(e); err != nil {
			return err
		}
	}
	v := subjectOf(e)
	_, err := tx.Exec(ctx, `INSERT INTO state (id, name, version, deleted, seq) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version, deleted = excluded.deleted, seq = excluded.seq`,
		v.ID, v.Name, v.Version, e.Type == "deleted", e.Seq)
	return err
}

func (s *stateSink) state(t *testing.T) map[int64]stateRow {
	t.Helper()
	rows, err := s.db.Query(context.Background(), `SELECT id, name, version, deleted, seq FROM state`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]stateRow{}
	for rows.Next() {
		var id int64
		var r stateRow
		if err := rows.Scan(&id, &r.Name, &r.Version, &r.Deleted, &r.Seq); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	return out
}

func sameState(t *testing.T, got, want map[int64]stateRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("copy holds %d subjects, the publisher %d", len(got), len(want))
	}
	for _, id := range slices.Sorted(maps.Keys(want)) {
		if got[id] != want[id] {
			t.Errorf("subject %d: copy %+v, publisher %+v", id, got[id], want[id])
		}
	}
}

// snapTest is a publisher of a subjectLog on a real HTTP server that
// records the paths asked for.
type snapTest struct {
	t      *testing.T
	log    *subjectLog
	pub    *Publisher
	srv    *httptest.Server
	mu     sync.Mutex
	paths  []string
	retain atomic.Int64
}

func newSnapTest(t *testing.T, pageSize, snapPage, retain int) *snapTest {
	st := &snapTest{t: t, log: &subjectLog{}}
	st.pub = NewPublisher(st.log, Options{
		Title: "subjects", ID: "urn:test:feed", EntryID: "urn:test:event:", Author: "test", Path: "/feed",
		PageSize: pageSize, SnapshotPageSize: snapPage, RetainPages: retain, Recheck: 20 * time.Millisecond,
		Changed: st.log.commits.Wait,
	}, slog.New(slog.DiscardHandler), metrics.New())
	mux := routes(st.pub)
	st.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		st.paths = append(st.paths, r.URL.Path)
		st.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(st.srv.Close)
	t.Cleanup(st.pub.Close)
	return st
}

func (st *snapTest) asked() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := st.paths
	st.paths = nil
	return out
}

func (st *snapTest) follower(sink *stateSink, opts ...func(*FollowerConfig)) (*Follower, *metrics.Set, func()) {
	st.t.Helper()
	m := metrics.New()
	cfg := FollowerConfig{
		Name: "subjects", URL: st.srv.URL + "/feed", DB: sink.db, Apply: sink.apply, Metrics: m,
		PollInterval: 20 * time.Millisecond, Wait: 5 * time.Second, Timeout: 2 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	f, err := NewFollower(context.Background(), cfg)
	if err != nil {
		st.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	st.t.Cleanup(stop)
	return f, m, stop
}

func waitCheckpoint(t *testing.T, f *Follower, seq int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for f.Status().CheckpointSeq < seq {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %d after 20 s, want %d; status %+v", f.Status().CheckpointSeq, seq, f.Status())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSnapshotDocument(t *testing.T) {
	st := newSnapTest(t, 4, 3, 0)
	st.log.churn(1, 7) // 7 created, 14 updated, 3 deleted: head 24
	want := st.log.state()

	// Every feed document links the snapshot.
	for _, path := range []string{"/feed", "/feed/archive/1"} {
		_, body := get(t, st.srv.URL+path)
		if p := parsePage(t, body); p.Snapshot != st.srv.URL+"/feed/snapshot" || p.IsSnapshot {
			t.Errorf("%s: snapshot link %q (is snapshot %v), want %s/feed/snapshot", path, p.Snapshot, p.IsSnapshot, st.srv.URL)
		}
	}

	resp, body := get(t, st.srv.URL+"/feed/snapshot")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("ETag") == "" {
		t.Fatalf("first page: status %d, Cache-Control %q, ETag %q: want 200, no-cache and an ETag", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("ETag"))
	}
	if r, _ := get(t, st.srv.URL+"/feed/snapshot", "If-None-Match", resp.Header.Get("ETag")); r.StatusCode != http.StatusNotModified {
		t.Errorf("first page again with its ETag: status %d, want 304", r.StatusCode)
	}
	// Events after the first page was read do not enter the pages after it.
	st.log.put("deleted", subject{2, "s2 v3", 4})
	st.log.put("created", subject{8, "s8", 1})

	got := map[int64]stateRow{}
	p := parsePage(t, body)
	if l := resp.Header.Get("Link"); l != "<"+p.Next+`>; rel="next"` || p.Next == "" {
		t.Errorf("first page: Link %q, next %q: want the next page in both", l, p.Next)
	}
	pages := 0
	for {
		pages++
		if !p.IsSnapshot || p.AsOf != 24 || p.Current != st.srv.URL+"/feed" {
			t.Fatalf("page %d (%s): snapshot %v as of %d, current %q: want a snapshot as of 24 linking /feed", pages, p.Self, p.IsSnapshot, p.AsOf, p.Current)
		}
		for _, e := range p.Events {
			s := subjectOf(e)
			if _, dup := got[s.ID]; dup {
				t.Errorf("subject %d on two pages", s.ID)
			}
			got[s.ID] = stateRow{Name: s.Name, Version: s.Version, Deleted: e.Type == "deleted", Seq: e.Seq}
			if e.Link != st.srv.URL+fmt.Sprintf("/s/%d", s.ID) || e.Title != s.Name {
				t.Errorf("entry %d: link %q, title %q: not shaped like the feed's", e.Seq, e.Link, e.Title)
			}
		}
		if len(p.Events) > 3 {
			t.Errorf("page %d holds %d entries, want at most 3", pages, len(p.Events))
		}
		if p.Next == "" {
			break
		}
		if !strings.Contains(p.Next, "seq=24") {
			t.Errorf("next link %s does not keep seq 24", p.Next)
		}
		_, body = get(t, p.Next)
		p = parsePage(t, body)
	}
	if pages != 3 {
		t.Errorf("%d pages for 7 subjects at 3 a page, want 3", pages)
	}
	sameState(t, got, want)
	if !want[4].Deleted || got[4] != want[4] {
		t.Errorf("subject 4: %+v, want its tombstone %+v", got[4], want[4])
	}

	for _, tc := range []struct {
		query string
		code  int
	}{{"?seq=99", 404}, {"?seq=-1", 400}, {"?seq=x", 400}, {"?after=3", 400}, {"?seq=3&after=x", 400}} {
		if r, _ := get(t, st.srv.URL+"/feed/snapshot"+tc.query); r.StatusCode != tc.code {
			t.Errorf("snapshot%s: status %d, want %d", tc.query, r.StatusCode, tc.code)
		}
	}
}

func TestRetentionAnswersGone(t *testing.T) {
	st := newSnapTest(t, 3, 0, 2)
	st.log.churn(1, 7) // head 24: 8 full pages, the newest 2 kept
	resp, body := get(t, st.srv.URL+"/feed/archive/6")
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("archive 6 of 8 with 2 kept: status %d, want 410", resp.StatusCode)
	}
	var gone struct{ Error, Oldest, Snapshot string }
	if err := json.Unmarshal(body, &gone); err != nil {
		t.Fatalf("410 body %s: %v", body, err)
	}
	if gone.Snapshot != st.srv.URL+"/feed/snapshot" || gone.Oldest != st.srv.URL+"/feed/archive/7" || !strings.Contains(gone.Error, "FEED_RETAIN_PAGES") {
		t.Errorf("410 body %+v", gone)
	}
	if l := resp.Header.Get("Link"); l != "<"+st.srv.URL+`/feed/snapshot>; rel="`+RelSnapshot+`"` {
		t.Errorf("410 Link %q", l)
	}
	if r, _ := get(t, st.srv.URL+"/feed/archive/7"); r.StatusCode != 200 || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("archive 7: status %d, Cache-Control %q: want 200, immutable", r.StatusCode, r.Header.Get("Cache-Control"))
	}
	_, body = get(t, st.srv.URL+"/feed")
	if p := parsePage(t, body); p.First != st.srv.URL+"/feed/archive/7" {
		t.Errorf("/feed first = %q, want the oldest page kept", p.First)
	}
	// A page kept in the cache is dropped all the same once it is old.
	get(t, st.srv.URL+"/feed/archive/7")
	st.log.churn(8, 1) // 3 more events: page 9 full, so 8 is the oldest kept
	if r, _ := get(t, st.srv.URL+"/feed/archive/7"); r.StatusCode != http.StatusGone {
		t.Errorf("archive 7 after page 9 filled: status %d, want 410", r.StatusCode)
	}
}

func TestFollowerBootstrapsFromSnapshot(t *testing.T) {
	st := newSnapTest(t, 5, 4, 0)
	st.log.churn(1, 10) // head 34
	sink := newStateSink(t)
	var applied []Checkpoint
	var mu sync.Mutex
	f, _, _ := st.follower(sink, func(c *FollowerConfig) {
		c.OnApplied = func(cp Checkpoint) { mu.Lock(); applied = append(applied, cp); mu.Unlock() }
	})
	waitCheckpoint(t, f, 34)
	sameState(t, sink.state(t), st.log.state())
	// At most the newest archive, which an empty /feed links back to.
	for _, path := range st.asked() {
		if strings.Contains(path, "/archive/") && path != "/feed/archive/6" {
			t.Errorf("asked for %s: a snapshot bootstrap needs no archive page", path)
		}
	}
	mu.Lock()
	if len(applied) != 1 || applied[0] != (Checkpoint{34, st.srv.URL + "/feed"}) {
		t.Errorf("checkpoints %+v, want one: 34 on /feed", applied)
	}
	mu.Unlock()
	if n := bootstraps(f); n != 1 {
		t.Errorf("follower_bootstraps = %v, want 1", n)
	}
	// Then it follows the feed from the snapshot's seq.
	st.log.put("deleted", subject{2, "s2 v3", 4})
	st.log.churn(11, 2)
	waitCheckpoint(t, f, 34+1+7)
	sameState(t, sink.state(t), st.log.state())
}

func TestFollowerStartBeginningReplaysArchives(t *testing.T) {
	st := newSnapTest(t, 5, 4, 0)
	st.log.churn(1, 10)
	sink := newStateSink(t)
	f, _, _ := st.follower(sink, func(c *FollowerConfig) { c.Start = StartBeginning })
	waitCheckpoint(t, f, 34)
	sameState(t, sink.state(t), st.log.state())
	var archives, snapshots int
	for _, path := range st.asked() {
		archives += strings.Count(path, "/archive/")
		snapshots += strings.Count(path, "/snapshot")
	}
	if archives < 6 || snapshots != 0 { // 1–6, and 7 which redirects to /feed
		t.Errorf("read %d archive pages and %d snapshot pages, want 6 or more and 0", archives, snapshots)
	}
	if n := bootstraps(f); n != 0 {
		t.Errorf("follower_bootstraps = %v, want 0", n)
	}
	if _, err := NewFollower(context.Background(), FollowerConfig{Name: "x", URL: "http://x/feed", DB: sink.db, Apply: sink.apply, Start: "middle"}); err == nil {
		t.Error("Start middle accepted")
	}
}

// A follower away longer than the publisher's retention meets 410 Gone,
// bootstraps again and ends with the publisher's state: subjects deleted
// while it was away are deleted in the copy too.
func TestFollowerRebootstrapsWhenPagesAreGone(t *testing.T) {
	for _, start := range []string{StartSnapshot, StartBeginning} {
		t.Run(start, func(t *testing.T) {
			st := newSnapTest(t, 4, 5, 3)
			st.log.churn(1, 4) // head 14: pages 1–3 full, all kept
			sink := newStateSink(t)
			f, _, stop := st.follower(sink, func(c *FollowerConfig) { c.Start = start })
			waitCheckpoint(t, f, 14)
			stop()
			// Away: every subject deleted or changed, new ones, many pages.
			for id := int64(1); id <= 4; id++ {
				st.log.put("deleted", subject{id, "gone", 9})
			}
			st.log.churn(5, 10) // head 14+4+34 = 52: pages 1–10 dropped
			if r, _ := get(t, st.srv.URL+"/feed/archive/4"); r.StatusCode != http.StatusGone {
				t.Fatalf("archive 4 is still served (%d): the test needs it dropped", r.StatusCode)
			}
			st.asked()
			f, _, _ = st.follower(sink, func(c *FollowerConfig) { c.Start = start })
			waitCheckpoint(t, f, 52)
			sameState(t, sink.state(t), st.log.state())
			if n := bootstraps(f); n != 1 {
				t.Errorf("follower_bootstraps = %v, want 1", n)
			}
			gone := false
			for _, path := range st.asked() {
				k, err := strconv.Atoi(strings.TrimPrefix(path, "/feed/archive/"))
				gone = gone || err == nil && k <= 10
			}
			if !gone {
				t.Error("the follower never met the dropped page")
			}
			st.log.put("updated", subject{5, "back", 7})
			waitCheckpoint(t, f, 53)
			sameState(t, sink.state(t), st.log.state())
		})
	}
}

// A bootstrap that fails part way (a crash, here an entry that cannot be
// applied) leaves nothing behind, and the next attempt starts cleanly.
func TestBootstrapIsAllOrNothing(t *testing.T) {
	st := newSnapTest(t, 5, 3, 0)
	st.log.churn(1, 9) // head 30
	sink := newStateSink(t)
	boom := func(e Event) error {
		if subjectOf(e).ID == 8 {
			return errors.New("crash")
		}
		return nil
	}
	sink.fail.Store(&boom)
	f, _, stop := st.follower(sink)
	waitFor(t, func() bool { return f.Status().Errors >= 2 })
	stop()
	if got := sink.state(t); len(got) != 0 {
		t.Fatalf("after a failed bootstrap the copy holds %d subjects, want none", len(got))
	}
	if cp, _ := f.Checkpoint(context.Background()); cp.Seq != 0 {
		t.Fatalf("after a failed bootstrap the checkpoint is %d, want none", cp.Seq)
	}
	sink.fail.Store(nil)
	f, _, _ = st.follower(sink)
	waitCheckpoint(t, f, 30)
	sameState(t, sink.state(t), st.log.state())
}

// A bootstrap is fenced by the follower lease like every commit: an
// instance that lost the lease cannot write the copy or the checkpoint.
func TestBootstrapIsFenced(t *testing.T) {
	st := newSnapTest(t, 5, 3, 0)
	st.log.churn(1, 5)
	sink := newStateSink(t)
	f, err := NewFollower(context.Background(), FollowerConfig{Name: "subjects", URL: st.srv.URL + "/feed", DB: sink.db, Apply: sink.apply, Instance: "a"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if ok, err := f.lease.acquire(ctx); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	// Another instance takes over (the lease expired while a paused).
	if err := sink.db.Write(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE feed_leases SET holder = 'b', token = token + 1`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.bootstrap(ctx, st.srv.URL+"/feed/snapshot"); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("bootstrap without the lease: %v, want ErrLeaseLost", err)
	}
	if got := sink.state(t); len(got) != 0 {
		t.Errorf("a fenced-off bootstrap wrote %d subjects", len(got))
	}
	if cp, _ := f.Checkpoint(ctx); cp.Seq != 0 {
		t.Errorf("a fenced-off bootstrap wrote checkpoint %d", cp.Seq)
	}
	// The holder's bootstrap commits; one to an older seq is refused.
	if ok, err := f.lease.acquire(ctx); ok || err != nil {
		t.Fatalf("acquire while b holds it: %v %v, want false", ok, err)
	}
	g, _ := NewFollower(ctx, FollowerConfig{Name: "subjects", URL: st.srv.URL + "/feed", DB: sink.db, Apply: sink.apply, Instance: "b"})
	if ok, err := g.lease.acquire(ctx); !ok || err != nil {
		t.Fatalf("b acquire: %v %v", ok, err)
	}
	if err := g.bootstrap(ctx, st.srv.URL+"/feed/snapshot"); err != nil {
		t.Fatal(err)
	}
	sameState(t, sink.state(t), st.log.state())
	g.cp = Checkpoint{}
	err = g.bootstrap(ctx, st.srv.URL+"/feed/snapshot?seq=10")
	if !errors.Is(err, ErrBackwards) {
		t.Errorf("bootstrap to seq 10 over checkpoint 17: %v, want ErrBackwards", err)
	}
}

func bootstraps(f *Follower) int64 { return f.snap.metric.(interface{ Count() int64 }).Count() }

func TestLinkNext(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{[]string{`<http://x/feed/snapshot?seq=3&after=7>; rel="next"`}, "http://x/feed/snapshot?seq=3&after=7"},
		{[]string{`<a>; rel="prev", <b>; rel="first next"`}, "b"},
		{[]string{`<a>; rel=prev`, `<b>;rel=next`}, "b"},
		{[]string{`<a>; rel="next-archive"`}, ""},
		{[]string{`a; rel="next"`}, ""},
		{nil, ""},
	} {
		if got := linkNext(tc.values); got != tc.want {
			t.Errorf("linkNext(%q) = %q, want %q", tc.values, got, tc.want)
		}
	}
}
