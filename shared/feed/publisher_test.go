package feed

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"syndic/shared/metrics"
	"syndic/shared/sqldb"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// memLog is an in-memory event log: a real Source, held in a slice.
// commits.Notify is what a writer's commit does.
type memLog struct {
	commits sqldb.Broadcast
	mu      sync.Mutex
	events  []Event
}

func (l *memLog) Head(context.Context) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.events)), nil
}

func (l *memLog) Events(_ context.Context, first, last int64) ([]Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.events {
		if e.Seq >= first && e.Seq <= last {
			out = append(out, e)
		}
	}
	return out, nil
}

// hostile are names that must come out of the feed exactly as they went in.
var hostile = []string{
	`Ada "the Countess" Lovelace`,
	`<script>alert('x')</script> & co`,
	`]]> breaks CDATA`,
	`Zoë 🎉 emoji`,
	`שלום עליכם`, // right-to-left
	`Ada\Byron/Lovelace {}`,
	"tab\tand newline\n",
}

func (l *memLog) add(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for range n {
		seq := int64(len(l.events) + 1)
		name := hostile[int(seq-1)%len(hostile)]
		data, _ := json.Marshal(map[string]any{"id": seq, "name": name})
		l.events = append(l.events, Event{
			Seq:     seq,
			Type:    "contact.created",
			Title:   name + " was added",
			Summary: name + " <x@example.org>",
			Link:    fmt.Sprintf("/contacts/%d", seq),
			Data:    data,
			Time:    time.Date(2026, 11, 23, 17, 4, 5, int(seq)*1e6, time.UTC),
		})
	}
}

// newMemLog returns a memLog holding n events.
func newMemLog(n int) *memLog {
	l := &memLog{}
	l.add(n)
	return l
}

func newTestPublisher(t *testing.T, src *memLog, base string, pageSize int) (*Publisher, *httptest.Server) {
	t.Helper()
	p := NewPublisher(src, Options{
		Title: "syndic contacts", ID: "urn:syndic:contacts:feed", EntryID: "urn:syndic:contacts:event:",
		Author: "contacts", Path: "/feed", PageSize: pageSize, BaseURL: base, Recheck: 50 * time.Millisecond,
		Changed: src.commits.Wait,
	}, slog.New(slog.DiscardHandler), metrics.New())
	srv := httptest.NewServer(routes(p))
	t.Cleanup(srv.Close)
	t.Cleanup(p.Close)
	return p, srv
}

// routes returns p's handlers on a mux of their own, with no guard.
func routes(p *Publisher) http.Handler {
	mux := http.NewServeMux()
	p.Register(mux, func(h http.Handler) http.Handler { return h })
	return mux
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// parsePage parses a document the test fetched, failing the test if it
// does not parse.
func parsePage(t *testing.T, body []byte) *Page {
	t.Helper()
	p, err := Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// seqsOf lists the seqs of p's events.
func seqsOf(p *Page) []int64 {
	var seqs []int64
	for _, e := range p.Events {
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

func TestGoldenArchivePage(t *testing.T) {
	log := newMemLog(8)
	_, srv := newTestPublisher(t, log, "https://contacts.example.org", 3)
	resp, body := get(t, srv.URL+"/feed/archive/2")
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	golden := filepath.Join("testdata", "archive-2.xml")
	if *update {
		if err := os.WriteFile(golden, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("archive page 2 differs from %s (go test -update rewrites it):\n%s", golden, body)
	}
}

func TestRoundTripThroughGofeed(t *testing.T) {
	log := newMemLog(len(hostile))
	_, srv := newTestPublisher(t, log, "", 50)
	_, body := get(t, srv.URL+"/feed")
	page := parsePage(t, body)
	if len(page.Events) != len(hostile) {
		t.Fatalf("events = %d, want %d", len(page.Events), len(hostile))
	}
	for i, got := range page.Events {
		want := log.events[i]
		if got.Seq != want.Seq || got.Type != want.Type || got.Title != want.Title || got.Summary != want.Summary {
			t.Errorf("event %d = %+v, want %+v", i, got, want)
		}
		if got.Link != srv.URL+want.Link {
			t.Errorf("event %d link = %q, want %q", i, got.Link, srv.URL+want.Link)
		}
		if !got.Time.Equal(want.Time) {
			t.Errorf("event %d time = %v, want %v", i, got.Time, want.Time)
		}
		var gotData, wantData map[string]any
		if err := json.Unmarshal(got.Data, &gotData); err != nil {
			t.Fatalf("event %d data %q: %v", i, got.Data, err)
		}
		json.Unmarshal(want.Data, &wantData)
		if gotData["name"] != wantData["name"] {
			t.Errorf("event %d name = %q, want %q", i, gotData["name"], wantData["name"])
		}
	}
	if page.Self != srv.URL+"/feed" || page.Archive || page.PrevArchive != "" {
		t.Errorf("links = %+v, want self %s/feed, no archive, no prev-archive", page, srv.URL)
	}
}

func TestLinksWalkFromFirstToCurrent(t *testing.T) {
	log := newMemLog(10)
	_, srv := newTestPublisher(t, log, "", 4)
	_, body := get(t, srv.URL+"/feed")
	cur := parsePage(t, body)
	if cur.First != srv.URL+"/feed/archive/1" || cur.PrevArchive != srv.URL+"/feed/archive/2" {
		t.Fatalf("current links first=%q prev-archive=%q", cur.First, cur.PrevArchive)
	}
	var seqs []int64
	url := cur.First
	for k := 1; k <= 2; k++ {
		resp, body := get(t, url)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: status %d", url, resp.StatusCode)
		}
		p := parsePage(t, body)
		if !p.Archive || p.Current != srv.URL+"/feed" || p.Self != url {
			t.Errorf("archive %d: archive=%v current=%q self=%q", k, p.Archive, p.Current, p.Self)
		}
		if k > 1 && p.PrevArchive != fmt.Sprintf("%s/feed/archive/%d", srv.URL, k-1) {
			t.Errorf("archive %d prev-archive = %q", k, p.PrevArchive)
		}
		seqs = append(seqs, seqsOf(p)...)
		url = p.NextArchive
	}
	// Archive 2's next-archive is the page being filled: it redirects to /feed.
	resp, _ := get(t, url)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != srv.URL+"/feed" {
		t.Fatalf("GET %s: status %d location %q, want 302 to /feed", url, resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := fmt.Sprint(seqsOf(cur)); got != "[7 8 9 10]" {
		t.Errorf("/feed seqs = %s, want the newest page's worth, overlapping the newest archive", got)
	}
	for _, s := range seqsOf(cur) { // as a follower does: each seq once
		if s > seqs[len(seqs)-1] {
			seqs = append(seqs, s)
		}
	}
	if fmt.Sprint(seqs) != "[1 2 3 4 5 6 7 8 9 10]" {
		t.Errorf("seqs = %v, want 1…10", seqs)
	}
	for _, path := range []string{"/feed/archive/4", "/feed/archive/0", "/feed/archive/x", "/feed/archive/01"} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, resp.StatusCode)
		}
	}
}

func TestArchiveCachingHeaders(t *testing.T) {
	log := newMemLog(6)
	_, srv := newTestPublisher(t, log, "", 3)
	resp, plain := get(t, srv.URL+"/feed/archive/1")
	etag := resp.Header.Get("ETag")
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
		t.Errorf("Cache-Control = %q", cc)
	}
	if !strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, "W/") {
		t.Errorf("ETag = %q, want a strong ETag", etag)
	}
	resp, _ = get(t, srv.URL+"/feed/archive/1", "If-None-Match", etag)
	if resp.StatusCode != http.StatusNotModified || resp.Header.Get("ETag") != etag {
		t.Errorf("conditional GET: status %d ETag %q, want 304 %s", resp.StatusCode, resp.Header.Get("ETag"), etag)
	}
	resp, zipped := get(t, srv.URL+"/feed/archive/1", "Accept-Encoding", "gzip, deflate")
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("ETag") == etag {
		t.Fatalf("gzip: Content-Encoding %q ETag %q, want gzip with its own ETag", resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, _ := io.ReadAll(zr)
	if !bytes.Equal(unzipped, plain) {
		t.Error("gzip body does not decode to the plain body")
	}
	// More events never change a full page.
	log.add(10)
	resp, again := get(t, srv.URL+"/feed/archive/1")
	if !bytes.Equal(again, plain) || resp.Header.Get("ETag") != etag {
		t.Error("archive page 1 changed after more events")
	}
}

func TestCurrentETagChangesExactlyWithContent(t *testing.T) {
	log := &memLog{}
	_, srv := newTestPublisher(t, log, "", 3)
	resp, empty := get(t, srv.URL+"/feed")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("empty feed: status %d Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	if p, err := Parse(bytes.NewReader(empty)); err != nil || len(p.Events) != 0 {
		t.Fatalf("empty feed: %v, %v", p, err)
	}
	etags := map[string]string{} // ETag → body
	for i := range 7 {
		resp, body := get(t, srv.URL+"/feed")
		resp2, body2 := get(t, srv.URL+"/feed")
		etag := resp.Header.Get("ETag")
		if resp2.Header.Get("ETag") != etag || !bytes.Equal(body, body2) {
			t.Fatalf("after %d events: two reads differ", i)
		}
		if prev, seen := etags[etag]; seen && prev != string(body) {
			t.Fatalf("ETag %s names two different bodies", etag)
		}
		for other, b := range etags {
			if other != etag && b == string(body) {
				t.Fatalf("same body under ETags %s and %s", other, etag)
			}
		}
		etags[etag] = string(body)
		if r, _ := get(t, srv.URL+"/feed", "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match current: status %d, want 304", r.StatusCode)
		}
		log.add(1)
		log.commits.Notify() // as a writer does after commit
	}
}

func TestLongPoll(t *testing.T) {
	log := newMemLog(2)
	pub, srv := newTestPublisher(t, log, "", 50)
	etagOf := func(t *testing.T) string {
		t.Helper()
		resp, _ := get(t, srv.URL+"/feed")
		return resp.Header.Get("ETag")
	}
	type answer struct {
		resp *http.Response
		body []byte
	}
	// longPoll asks for /feed unless it still has etag, waiting up to 20 s,
	// and returns once the publisher holds the request.
	longPoll := func(t *testing.T, etag string) <-chan answer {
		t.Helper()
		got := make(chan answer, 1)
		go func() {
			resp, body := get(t, srv.URL+"/feed", "If-None-Match", etag, "Prefer", "wait=20")
			got <- answer{resp, body}
		}()
		waitFor(t, func() bool { return pub.waiting.Load() == 1 })
		return got
	}
	etag := etagOf(t)

	t.Run("answers when an event is committed", func(t *testing.T) {
		got := longPoll(t, etag)
		log.add(1)
		log.commits.Notify()
		a := <-got
		resp := a.resp
		if resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
			t.Fatalf("status %d ETag %q, want 200 with a new ETag", resp.StatusCode, resp.Header.Get("ETag"))
		}
		if p, err := Parse(bytes.NewReader(a.body)); err != nil || len(p.Events) != 3 {
			t.Fatalf("page after wake: %v events, %v; want 3", len(p.Events), err)
		}
		if resp.Header.Get("Preference-Applied") != "wait=20" {
			t.Errorf("Preference-Applied = %q", resp.Header.Get("Preference-Applied"))
		}
	})

	t.Run("sees events committed elsewhere without a commit signal", func(t *testing.T) {
		got := longPoll(t, etagOf(t))
		log.add(1) // no commit signal: the recheck finds it
		if status := (<-got).resp.StatusCode; status != 200 {
			t.Fatalf("status %d, want 200", status)
		}
	})

	t.Run("304 at the deadline", func(t *testing.T) {
		etag := etagOf(t)
		start := time.Now()
		resp, _ := get(t, srv.URL+"/feed", "If-None-Match", etag, "Prefer", "wait=1")
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("status %d, want 304", resp.StatusCode)
		}
		if waited := time.Since(start); waited < 900*time.Millisecond {
			t.Errorf("answered after %v, before the 1 s wait", waited)
		}
	})

	t.Run("a stale ETag answers at once", func(t *testing.T) {
		resp, _ := get(t, srv.URL+"/feed", "If-None-Match", `"old"`, "Prefer", "wait=20")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
	})

	t.Run("events from another process show within HeadMaxAge", func(t *testing.T) {
		etag := etagOf(t)
		log.add(1) // no commit signal: another process wrote it
		waitFor(t, func() bool { return etagOf(t) != etag })
	})

	t.Run("Close releases waiters", func(t *testing.T) {
		got := longPoll(t, etagOf(t))
		pub.Close()
		if status := (<-got).resp.StatusCode; status != http.StatusNotModified {
			t.Fatalf("status %d, want 304", status)
		}
	})
}

func TestForwardedBaseURL(t *testing.T) {
	log := newMemLog(1)
	_, srv := newTestPublisher(t, log, "", 50)
	_, body := get(t, srv.URL+"/feed", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "contacts.example.org")
	p := parsePage(t, body)
	if p.Self != "https://contacts.example.org/feed" || p.Events[0].Link != "https://contacts.example.org/contacts/1" {
		t.Errorf("self %q, entry link %q: want the forwarded public address", p.Self, p.Events[0].Link)
	}
	_, body = get(t, srv.URL+"/feed", "X-Forwarded-Host", `evil.org/"><x`)
	if bytes.Contains(body, []byte("evil")) {
		t.Error("a malformed X-Forwarded-Host reached the document")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHeaderParsing(t *testing.T) {
	for _, tc := range []struct {
		prefer string
		want   time.Duration
	}{
		{"wait=10", 10 * time.Second},
		{"respond-async, wait=3", 3 * time.Second},
		{"wait=100", 25 * time.Second},
		{`wait="5"`, 5 * time.Second},
		{"wait=-1", 0},
		{"wait=x", 0},
		{"", 0},
		{"return=minimal", 0},
	} {
		if got := preferWait(tc.prefer, 25*time.Second); got != tc.want {
			t.Errorf("preferWait(%q) = %v, want %v", tc.prefer, got, tc.want)
		}
	}
	for _, tc := range []struct {
		inm, etag string
		want      bool
	}{
		{`"a"`, `"a"`, true},
		{`W/"a"`, `"a"`, true},
		{`"b", "a"`, `"a"`, true},
		{`*`, `"a"`, true},
		{`"b"`, `"a"`, false},
		{``, `"a"`, false},
	} {
		if got := matches(tc.inm, tc.etag); got != tc.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tc.inm, tc.etag, got, tc.want)
		}
	}
	for ae, want := range map[string]bool{"gzip": true, "br, gzip;q=0.5": true, "GZIP": true, "gzip;q=0": false, "deflate": false, "": false} {
		if got := acceptsGzip(ae); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", ae, got, want)
		}
	}
}

// TestGzipperReusesWriters: documents encoded at once through one gzipper,
// its writers reused, each decode to their own bytes.
func TestGzipperReusesWriters(t *testing.T) {
	var z gzipper
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				doc := []byte(strings.Repeat(fmt.Sprintf("<entry>%d-%d</entry>", i, j), 10*(j+1)))
				zr, err := gzip.NewReader(bytes.NewReader(z.encode(doc)))
				if err != nil {
					t.Error(err)
					return
				}
				got, err := io.ReadAll(zr)
				if err != nil || !bytes.Equal(got, doc) {
					t.Errorf("document %d-%d: decoded %d bytes (%v), want its %d", i, j, len(got), err, len(doc))
				}
			}
		})
	}
	wg.Wait()
}

func TestEscapeJSONKeepsTheValue(t *testing.T) {
	for _, s := range append(hostile, "\ufffe nonchar", "nul\x00", "]]>", "\u2028") {
		js, _ := json.Marshal(s)
		doc := "<x>" + string(escapeJSON(js)) + "</x>"
		var v struct {
			Text string `xml:",chardata"`
		}
		if err := xmlUnmarshal(doc, &v); err != nil {
			t.Fatalf("%q: escaped JSON is not XML text: %v", s, err)
		}
		var got string
		if err := json.Unmarshal([]byte(v.Text), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got != s {
			t.Errorf("round trip of %q gave %q", s, got)
		}
	}
}

func TestAfterParameter(t *testing.T) {
	log := newMemLog(12)
	_, srv := newTestPublisher(t, log, "", 5) // archives 1–2 full, /feed holds 11–12
	seqs := func(path string) string {
		t.Helper()
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		p := parsePage(t, body)
		if p.Self != srv.URL+"/feed" || p.PrevArchive != srv.URL+"/feed/archive/2" {
			t.Errorf("GET %s: links %+v, want those of /feed", path, p)
		}
		return fmt.Sprint(seqsOf(p))
	}
	for path, want := range map[string]string{
		"/feed":          "[8 9 10 11 12]", // a page's worth: feed readers see the newest at once
		"/feed?after=11": "[12]",
		"/feed?after=12": "[]",
		"/feed?after=7":  "[8 9 10 11 12]", // reaches back into the newest archive
		"/feed?after=2":  "[6 7 8 9 10 11 12]",
		"/feed?after=0":  "[6 7 8 9 10 11 12]",
	} {
		if got := seqs(path); got != want {
			t.Errorf("GET %s: seqs %s, want %s", path, got, want)
		}
	}
	resp, _ := get(t, srv.URL+"/feed?after=12")
	if r, _ := get(t, srv.URL+"/feed?after=12", "If-None-Match", resp.Header.Get("ETag")); r.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET with after: %d, want 304", r.StatusCode)
	}
	if r, _ := get(t, srv.URL+"/feed?after=x"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("after=x: %d, want 400", r.StatusCode)
	}
}
