package contacts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"syndic/shared/config"
	"syndic/shared/feed"
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
	return append(all, cur.Events...)
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
		{"no credentials", "", "", "public, max-age=31536000, immutable", "Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto"},
		{"credentials", "tok", "", "private, max-age=31536000, immutable", "Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto, Authorization"},
		{"credentials, private", "tok", "private", "private, max-age=31536000, immutable", "Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto, Authorization"},
		{"credentials, checking cache", "tok", "public", "public, max-age=31536000, immutable", "Accept-Encoding, X-Forwarded-Host, X-Forwarded-Proto, Authorization"},
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
