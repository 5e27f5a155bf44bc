package contacts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"syndic/shared/config"
	"syndic/shared/feed"

	"github.com/mmcdole/gofeed"
)

func configCommon(token, password string) config.Common {
	return config.Common{APIToken: token, UIUser: "admin", UIPassword: password, LogLevel: "warn"}
}

// readPage GETs a feed document and parses it with gofeed's atom parser.
func readPage(t *testing.T, c *client, path string) *feed.Page {
	t.Helper()
	resp, body := c.Do("GET", path, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, body)
	}
	p, err := feed.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return p
}

// readAll is a client that knows only the /feed URL: it starts at the
// oldest archive the feed links, follows next-archive to the end, then
// takes the subscription document's events.
func readAll(t *testing.T, c *client) []feed.Event {
	t.Helper()
	cur := readPage(t, c, "/feed")
	var all []feed.Event
	url := cur.First
	for url != "" {
		p := readPage(t, c, trimBase(c, url))
		if !p.Archive { // next-archive of the newest archive leads to /feed
			break
		}
		all = append(all, p.Events...)
		url = p.NextArchive
	}
	// /feed holds the newest page's worth, overlapping the newest archive:
	// as a follower does, take each seq once.
	for _, e := range cur.Events {
		if len(all) == 0 || e.Seq > all[len(all)-1].Seq {
			all = append(all, e)
		}
	}
	return all
}

func trimBase(c *client, url string) string {
	if len(url) > len(c.Base) && url[:len(c.Base)] == c.Base {
		return url[len(c.Base):]
	}
	return url
}

// TestFeedCarriesEveryChange is done-when 2: 130 creates, 10 updates and 5
// deletes read back from the feed exactly once, in order, with the right
// human and machine parts.
func TestFeedCarriesEveryChange(t *testing.T) {
	t.Parallel()
	c := newClient(t, runService(t, Config{}))
	type change struct {
		typ, title string
		after      Contact
	}
	var want []change
	var people []Contact
	for i := range 130 {
		p := c.create(Input{Name: fmt.Sprintf("Person %d", i), Email: fmt.Sprintf("p%d@example.org", i)})
		people = append(people, p)
		want = append(want, change{EventCreated, p.Name + " was added", p})
	}
	for i := range 10 {
		p := people[i*3]
		resp, body := c.Do("PUT", fmt.Sprintf("/api/contacts/%d", p.ID), Input{Name: p.Name, Email: "new-" + p.Email}, "If-Match", `"1"`)
		if resp.StatusCode != 200 {
			t.Fatalf("update: %d %s", resp.StatusCode, body)
		}
		var after Contact
		json.Unmarshal(body, &after)
		want = append(want, change{EventUpdated, p.Name + "'s email changed", after})
	}
	for i := range 5 {
		p := people[100+i]
		if resp, body := c.Do("DELETE", fmt.Sprintf("/api/contacts/%d", p.ID), nil); resp.StatusCode != 204 {
			t.Fatalf("delete: %d %s", resp.StatusCode, body)
		}
		gone := p
		gone.Version++
		want = append(want, change{EventDeleted, p.Name + " was deleted", gone})
	}

	got := readAll(t, c)
	if len(got) != 145 {
		t.Fatalf("read %d events, want 145", len(got))
	}
	for i, e := range got {
		w := want[i]
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d: not each exactly once in order", i, e.Seq)
		}
		if e.Type != w.typ || e.Title != w.title || e.Summary == "" {
			t.Errorf("seq %d: %s %q (summary %q), want %s %q", e.Seq, e.Type, e.Title, e.Summary, w.typ, w.title)
		}
		if e.Link != fmt.Sprintf("%s/contacts/%d", c.Base, w.after.ID) {
			t.Errorf("seq %d: link %q", e.Seq, e.Link)
		}
		var data Contact
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatalf("seq %d: data %s: %v", e.Seq, e.Data, err)
		}
		if data.ID != w.after.ID || data.Name != w.after.Name || data.Email != w.after.Email || data.Version != w.after.Version {
			t.Errorf("seq %d: data %+v, want %+v", e.Seq, data, w.after)
		}
		if e.Time.IsZero() || time.Since(e.Time) > time.Hour {
			t.Errorf("seq %d: time %v", e.Seq, e.Time)
		}
	}
}

// TestFeedHTTP is done-when 3 against the running service: immutable
// archives with strong ETags and 304, /feed's ETag, and long-poll.
func TestFeedHTTP(t *testing.T) {
	t.Parallel()
	c := newClient(t, runService(t, Config{FeedPageSize: 5}))
	for i := range 7 {
		c.create(Input{Name: fmt.Sprint("P", i), Email: fmt.Sprintf("p%d@example.org", i)})
	}
	resp, _ := c.Do("GET", "/feed/archive/1", nil)
	etag := resp.Header.Get("ETag")
	if resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || len(etag) < 3 || etag[0] != '"' {
		t.Fatalf("archive: Cache-Control %q ETag %q", resp.Header.Get("Cache-Control"), etag)
	}
	if resp, _ := c.Do("GET", "/feed/archive/1", nil, "If-None-Match", etag); resp.StatusCode != 304 {
		t.Fatalf("archive conditional GET: %d, want 304", resp.StatusCode)
	}

	resp, _ = c.Do("GET", "/feed", nil)
	fe := resp.Header.Get("ETag")
	if resp, _ := c.Do("GET", "/feed", nil, "If-None-Match", fe); resp.StatusCode != 304 {
		t.Fatalf("/feed conditional GET: %d, want 304", resp.StatusCode)
	}

	// A long-poll returns as soon as a change is committed...
	type result struct {
		status int
		body   []byte
		etag   string
	}
	done := make(chan result, 1)
	go func() {
		resp, body := c.Do("GET", "/feed", nil, "If-None-Match", fe, "Prefer", "wait=25")
		done <- result{resp.StatusCode, body, resp.Header.Get("ETag")}
	}()
	time.Sleep(50 * time.Millisecond) // not synchronisation: the answer is right either way
	c.create(Input{Name: "Late", Email: "late@example.org"})
	r := <-done
	if r.status != 200 || r.etag == fe {
		t.Fatalf("long-poll: status %d ETag %q, want 200 and a new ETag", r.status, r.etag)
	}
	p, err := feed.Parse(bytes.NewReader(r.body))
	if err != nil || p.Events[len(p.Events)-1].Title != "Late was added" {
		t.Fatalf("long-poll body: %v %v", p, err)
	}
	// ...and with 304 at its deadline when none is.
	start := time.Now()
	resp, _ = c.Do("GET", "/feed", nil, "If-None-Match", r.etag, "Prefer", "wait=1")
	if resp.StatusCode != 304 || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("idle long-poll: status %d after %v, want 304 after 1 s", resp.StatusCode, time.Since(start))
	}
}

// TestArchivesAndSharedCaches: with credentials configured, archive pages
// are private (no shared cache keeps them) unless ARCHIVE_CACHE=public
// says the cache in front checks the credentials, and every feed answer
// varies by Authorization; without credentials they are public.
func TestArchivesAndSharedCaches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, token, archiveCache string
		cacheControl, vary        string
	}{
		{"no credentials", "", "", "public, max-age=31536000, immutable", "Accept, Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto"},
		{"credentials", "tok", "", "private, max-age=31536000, immutable", "Accept, Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto, Authorization"},
		{"credentials, private", "tok", "private", "private, max-age=31536000, immutable", "Accept, Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto, Authorization"},
		{"credentials, checking cache", "tok", "public", "public, max-age=31536000, immutable", "Accept, Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto, Authorization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, runService(t, Config{FeedPageSize: 2, ArchiveCache: tc.archiveCache, Common: configCommon(tc.token, "")}))
			c.Token = tc.token
			for i := range 3 {
				c.create(Input{Name: fmt.Sprint("P", i), Email: fmt.Sprintf("p%d@example.org", i)})
			}
			resp, body := c.Do("GET", "/feed/archive/1", nil)
			if resp.StatusCode != 200 {
				t.Fatalf("archive: %d %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Cache-Control"); got != tc.cacheControl {
				t.Errorf("archive Cache-Control = %q, want %q", got, tc.cacheControl)
			}
			for _, path := range []string{"/feed/archive/1", "/feed"} {
				resp, _ := c.Do("GET", path, nil)
				if got := resp.Header.Get("Vary"); got != tc.vary {
					t.Errorf("%s Vary = %q, want %q", path, got, tc.vary)
				}
			}
		})
	}
}

// TestFeedReaderSeesTheNewest: a feed reader that subscribes right after a
// page filled sees the newest changes in /feed — gofeed's universal parser
// (what many readers use) and, where installed, the real newsboat.
func TestFeedReaderSeesTheNewest(t *testing.T) {
	t.Parallel()
	base := runService(t, Config{FeedPageSize: 5})
	c := newClient(t, base)
	for k := 1; k <= 3; k++ {
		for i := range 5 {
			c.create(Input{Name: fmt.Sprintf("Page %d Person %d", k, i), Email: fmt.Sprintf("p%d-%d@example.org", k, i)})
		}
		resp, body := c.Do("GET", "/feed", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("/feed: %d", resp.StatusCode)
		}
		f, err := gofeed.NewParser().ParseString(string(body))
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Items) != 5 || !strings.Contains(f.Items[0].Title, fmt.Sprintf("Page %d Person 4", k)) {
			t.Fatalf("after page %d filled, a reader sees %d items (first %q), want the 5 newest", k, len(f.Items), f.Items[0].Title)
		}
	}
	newsboat, err := exec.LookPath("newsboat")
	if err != nil {
		t.Log("newsboat not installed: only gofeed's view checked")
		return
	}
	dir := t.TempDir()
	urls := filepath.Join(dir, "urls")
	os.WriteFile(urls, []byte(base+"/feed\n"), 0o644)
	args := []string{"-u", urls, "-c", filepath.Join(dir, "cache.db"), "-C", filepath.Join(dir, "config")}
	os.WriteFile(filepath.Join(dir, "config"), nil, 0o644)
	if out, err := exec.Command(newsboat, append(args, "-x", "reload")...).CombinedOutput(); err != nil {
		t.Fatalf("newsboat reload: %v\n%s", err, out)
	}
	out, err := exec.Command(newsboat, append(args, "-x", "print-unread")...).CombinedOutput()
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(out)), "5 ") {
		t.Fatalf("newsboat print-unread: %v: %q, want 5 unread articles", err, out)
	}
}

// TestFeedForBrowsers: the feed names its stylesheet, and a browser (it asks
// for text/html first) gets it as application/xml, which browsers show as a
// document with that stylesheet, where atom+xml is shown as plain text.
func TestFeedForBrowsers(t *testing.T) {
	t.Parallel()
	c := newClient(t, runService(t, Config{}))
	c.create(Input{Name: "Ada", Email: "ada@example.org"})
	for accept, want := range map[string]string{
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": "application/xml; charset=utf-8",
		"application/atom+xml, text/html;q=0.5":                           "application/atom+xml; charset=utf-8",
		"":                                                                "application/atom+xml; charset=utf-8",
	} {
		resp, body := c.Do("GET", "/feed", nil, "Accept", accept)
		if ct := resp.Header.Get("Content-Type"); ct != want || !strings.Contains(string(body), `<?xml-stylesheet type="text/css" href="/static/feed.css"?>`) {
			t.Errorf("Accept %q: Content-Type %q, want %q (stylesheet named: %v)", accept, ct, want, strings.Contains(string(body), "xml-stylesheet"))
		}
	}
	if resp, body := c.Do("GET", "/static/feed.css", nil); resp.StatusCode != 200 || !strings.Contains(string(body), "@namespace ev url(urn:syndic:event)") {
		t.Fatalf("feed stylesheet: %d", resp.StatusCode)
	}
}
