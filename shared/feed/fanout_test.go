package feed

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"syndic/shared/metrics"
)

// countingLog is a memLog that counts its reads.
type countingLog struct {
	*memLog
	heads, events atomic.Int64
}

func (l *countingLog) Head(ctx context.Context) (int64, error) {
	l.heads.Add(1)
	return l.memLog.Head(ctx)
}

func (l *countingLog) Events(ctx context.Context, first, last int64) ([]Event, error) {
	l.events.Add(1)
	return l.memLog.Events(ctx, first, last)
}

// fanOutAnswer is what one long-poll got.
type fanOutAnswer struct {
	status int
	etag   string
	body   []byte
	err    error
}

// fanOutPoll long-polls url with etag, as a follower does, on c.
func fanOutPoll(c *http.Client, url, etag string) fanOutAnswer {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return fanOutAnswer{err: err}
	}
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("If-None-Match", etag)
	req.Header.Set("Prefer", "wait=20")
	resp, err := c.Do(req)
	if err != nil {
		return fanOutAnswer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return fanOutAnswer{resp.StatusCode, resp.Header.Get("ETag"), body, err}
}

// fanOutServer serves p over a real HTTP server and returns its URL and a
// client with room for conns kept connections; the server, p and the
// client's connections are closed when t ends (p first, so no handler is
// left waiting).
func fanOutServer(t *testing.T, p *Publisher, conns int) (string, *http.Client) {
	t.Helper()
	srv := httptest.NewServer(routes(p))
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: conns + 10, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return srv.URL, &http.Client{Transport: tr}
}

// TestFanOutSharesOneReadAndOneRender: many long-polls waiting on /feed
// all get the same, correct document after one commit, and between them
// the source is read for its head a few times and for the events once —
// not once per waiter. Waiters at another checkpoint (?after) get their
// own document, and one that asks with the ETag from before the commit
// gets the new document at once.
func TestFanOutSharesOneReadAndOneRender(t *testing.T) {
	const waiters = 200
	src := &countingLog{memLog: newMemLog(3)}
	p := NewPublisher(src, Options{
		Title: "syndic contacts", ID: "urn:syndic:contacts:feed", EntryID: "urn:syndic:contacts:event:",
		Author: "contacts", Path: "/feed", PageSize: 50, Recheck: time.Hour,
		Changed: src.commits.Wait,
	}, slog.New(slog.DiscardHandler), metrics.New())
	base, c := fanOutServer(t, p, waiters)

	first := fanOutPoll(c, base+"/feed?after=3", "")
	if first.err != nil || first.status != 200 {
		t.Fatalf("first GET: %d %v", first.status, first.err)
	}
	urls := make([]string, waiters)
	for i := range urls {
		urls[i] = base + "/feed?after=3"
		if i%4 == 0 {
			urls[i] = base + "/feed?after=1" // a follower further behind
		}
	}
	answers := make([]fanOutAnswer, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() { answers[i] = fanOutPoll(c, urls[i], first.etag) })
	}
	waitFor(t, func() bool { return p.waiting.Load() == waiters })
	time.Sleep(20 * time.Millisecond) // let the last ones reach their select
	heads, events := src.heads.Load(), src.events.Load()

	src.add(1)
	src.commits.Notify()
	wg.Wait()

	want := map[string][]byte{}
	for i, a := range answers {
		if a.err != nil || a.status != 200 {
			t.Fatalf("waiter %d: status %d, %v; want 200", i, a.status, a.err)
		}
		if a.etag == first.etag {
			t.Fatalf("waiter %d: the ETag from before the commit", i)
		}
		pg, err := Parse(bytes.NewReader(a.body))
		if err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
		after, _ := strconv.Atoi(urls[i][len(urls[i])-1:])
		if n := len(pg.Events); n != 4-after || pg.Events[n-1].Seq != 4 {
			t.Fatalf("waiter %d (after=%d): %d events, want seq %d to 4", i, after, n, after+1)
		}
		if w, ok := want[urls[i]]; !ok {
			want[urls[i]] = a.body
		} else if !bytes.Equal(w, a.body) {
			t.Fatalf("waiter %d: a different document from another waiter on %s", i, urls[i])
		}
	}
	if got := src.events.Load() - events; got != 2 {
		t.Errorf("%d reads of the events after one commit, want 2: one per document", got)
	}
	if got := src.heads.Load() - heads; got > 4 {
		t.Errorf("%d reads of the head after one commit for %d waiters, want a few shared ones", got, waiters)
	}

	// A follower that missed the wake-up asks with the old ETag: it gets
	// the new document at once, the same bytes.
	late := fanOutPoll(c, base+"/feed?after=3", first.etag)
	if late.status != 200 || !bytes.Equal(late.body, want[base+"/feed?after=3"]) {
		t.Fatalf("a late long-poll with the old ETag: status %d, %d bytes; want 200 with the shared document", late.status, len(late.body))
	}
	// And one with the new ETag waits again until the next commit.
	next := make(chan fanOutAnswer, 1)
	go func() { next <- fanOutPoll(c, base+"/feed?after=4", late.etag) }()
	waitFor(t, func() bool { return p.waiting.Load() == 1 })
	src.add(1)
	src.commits.Notify()
	if a := <-next; a.status != 200 || !bytes.Contains(a.body, []byte(`seq="5"`)) {
		t.Fatalf("after the next commit: status %d, want 200 with seq 5:\n%s", a.status, a.body)
	}
}

// TestHeadReadsShared: requests that arrive while a read of the head is in
// flight share it only when it is fresh enough for them — one that needs a
// read begun after it arrived (a recheck, or HeadMaxAge < 0) gets one.
func TestHeadReadsShared(t *testing.T) {
	src := &blockingHead{memLog: newMemLog(5), release: make(chan struct{}), started: make(chan struct{}, 10)}
	p := NewPublisher(src, Options{Path: "/feed", PageSize: 50, Changed: src.commits.Wait}, slog.New(slog.DiscardHandler), metrics.New())
	ctx := context.Background()

	got := make(chan string, 3)
	go func() { h, err := p.head(ctx, time.Now(), time.Minute); got <- fmt.Sprint("first ", h, err) }()
	<-src.started // the first read is in flight
	arrived := time.Now()
	go func() { h, err := p.head(ctx, arrived, time.Minute); got <- fmt.Sprint("joined ", h, err) }()
	go func() { h, err := p.head(ctx, arrived, 0); got <- fmt.Sprint("strict ", h, err) }()
	time.Sleep(20 * time.Millisecond)
	src.add(1) // committed while the first read is in flight, not yet seen by it
	src.release <- struct{}{}
	// The strict request cannot use the first read: it waits for it, then
	// reads again.
	<-src.started
	src.release <- struct{}{}
	answers := map[string]bool{}
	for range 3 {
		answers[<-got] = true
	}
	for _, want := range []string{"first 5 <nil>", "joined 5 <nil>", "strict 6 <nil>"} {
		if !answers[want] {
			t.Errorf("answers %v, want %q among them", answers, want)
		}
	}
	if n := src.reads.Load(); n != 2 {
		t.Errorf("%d reads of the head, want 2", n)
	}
}

// blockingHead is a memLog whose Head waits for release, reading the head
// as it was when the read began.
type blockingHead struct {
	*memLog
	release chan struct{}
	started chan struct{}
	reads   atomic.Int64
}

func (l *blockingHead) Head(ctx context.Context) (int64, error) {
	l.reads.Add(1)
	h, err := l.memLog.Head(ctx)
	l.started <- struct{}{}
	<-l.release
	return h, err
}

// TestRecheckShared: events committed by another process (no commit
// signal) reach waiting long-polls at the next recheck, which they share:
// one timer and one read of the head per tick for all of them.
func TestRecheckShared(t *testing.T) {
	const waiters = 50
	src := &countingLog{memLog: newMemLog(2)}
	p := NewPublisher(src, Options{Path: "/feed", PageSize: 50, Recheck: 100 * time.Millisecond, Changed: src.commits.Wait},
		slog.New(slog.DiscardHandler), metrics.New())
	base, c := fanOutServer(t, p, waiters)
	first := fanOutPoll(c, base+"/feed", "")
	answers := make([]fanOutAnswer, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() { answers[i] = fanOutPoll(c, base+"/feed", first.etag) })
	}
	waitFor(t, func() bool { return p.waiting.Load() == waiters })
	heads := src.heads.Load()
	src.add(1) // another process's commit: no signal here
	wg.Wait()
	for i, a := range answers {
		if a.status != 200 || !bytes.Contains(a.body, []byte(`seq="3"`)) {
			t.Fatalf("waiter %d: status %d, %v; want 200 with seq 3", i, a.status, a.err)
		}
	}
	// One read per tick until the event showed (a tick or two), plus at
	// most one by a waiter that was not yet asleep: far fewer than one per
	// waiter.
	if got := src.heads.Load() - heads; got >= waiters/5 {
		t.Errorf("%d reads of the head for %d waiters rechecking, want a few shared ones", got, waiters)
	}
}

// TestCloseAnswersLongPolls: Close answers every waiting long-poll at
// once with 304 and the ETag it asked with, and a long-poll that arrives
// after Close is answered at once too, not held for its wait (20 s here,
// with no commit and no recheck due).
func TestCloseAnswersLongPolls(t *testing.T) {
	const waiters = 20
	src := &countingLog{memLog: newMemLog(2)}
	p := NewPublisher(src, Options{Path: "/feed", PageSize: 50, Recheck: time.Hour, Changed: src.commits.Wait},
		slog.New(slog.DiscardHandler), metrics.New())
	base, c := fanOutServer(t, p, waiters)
	first := fanOutPoll(c, base+"/feed", "")
	if first.err != nil || first.status != 200 {
		t.Fatalf("first GET: %d %v", first.status, first.err)
	}
	answers := make(chan fanOutAnswer, waiters+1)
	for range waiters {
		go func() { answers <- fanOutPoll(c, base+"/feed", first.etag) }()
	}
	waitFor(t, func() bool { return p.waiting.Load() == waiters })
	p.Close()
	check := func(who string, a fanOutAnswer) {
		t.Helper()
		if a.err != nil || a.status != http.StatusNotModified || a.etag != first.etag {
			t.Fatalf("%s: status %d, ETag %s, %v; want 304 with %s", who, a.status, a.etag, a.err, first.etag)
		}
	}
	for i := range waiters {
		select {
		case a := <-answers:
			check(fmt.Sprintf("waiter %d", i), a)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d waiters still waiting 10 s after Close", waiters-i, waiters)
		}
	}
	go func() { answers <- fanOutPoll(c, base+"/feed", first.etag) }()
	select {
	case a := <-answers:
		check("a long-poll after Close", a)
	case <-time.After(10 * time.Second):
		t.Fatal("a long-poll that arrived after Close still waiting after 10 s")
	}
	if n := p.waiting.Load(); n != 0 {
		t.Errorf("%d long-polls waiting after Close", n)
	}
}
