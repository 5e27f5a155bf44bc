package calendar

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, base, path string, v url.Values) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Request.URL.Path, string(b)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTML(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{})
	s.seed(t, feedContact{ID: 7, Name: "Ada <Lovelace>", Email: "ada@example.org"}, feedContact{ID: 8, Name: "Grace", Email: "grace@example.org"})
	form := url.Values{"title": {"Review"}, "starts_at": {"2030-01-15T09:30"}, "ends_at": {"2030-01-15T10:30"}, "timezone": {"Europe/Paris"}, "participants": {"7", "8"}}

	bad := url.Values{"title": {""}, "starts_at": {"2030-01-15T09:30"}, "ends_at": {"2030-01-15T08:00"}, "timezone": {"Mars/Olympus"}, "participants": {"7"}}
	status, _, body := post(t, s.URL, "/appointments", bad)
	if status != 400 || !strings.Contains(body, `id="title-problem"`) || !strings.Contains(body, `id="timezone-problem"`) {
		t.Fatalf("invalid form: %d\n%s", status, body)
	}

	status, at, body := post(t, s.URL, "/appointments", form)
	if status != 200 || !strings.HasPrefix(at, "/appointments/") || !strings.Contains(body, "Ada &lt;Lovelace&gt;") || !strings.Contains(body, "UTC&#43;01:00") {
		t.Fatalf("create: %d at %s\n%s", status, at, body)
	}
	if !strings.Contains(body, "Appointment booked: its participants are sent an invitation.") {
		t.Errorf("create: the page doesn't say what happened:\n%s", body)
	}
	if _, list := get(t, s.URL+"/"); !strings.Contains(list, "Review") {
		t.Fatal("upcoming list lacks the appointment")
	}

	// Grace is deleted upstream: she stays on the appointment, marked.
	s.seed(t, feedContact{ID: 8, Name: "deleted:Grace", Email: "grace@example.org", Version: 2})
	_, page := get(t, s.URL+at)
	if !strings.Contains(page, "Grace") || !strings.Contains(page, "deleted") {
		t.Fatalf("appointment page does not mark Grace deleted:\n%s", page)
	}

	// A stale edit is refused and keeps the input.
	edit := url.Values{"title": {"Review 2"}, "starts_at": {"2030-01-15T09:30"}, "ends_at": {"2030-01-15T10:30"}, "timezone": {"UTC+01:00"}, "participants": {"7", "8"}, "version": {"1"}}
	if status, _, body := post(t, s.URL, at, edit); status != 200 || !strings.Contains(body, "Review 2") || !strings.Contains(body, "Changes saved") {
		t.Fatalf("edit: %d\n%s", status, body)
	}
	edit.Set("title", "Review 3")
	if status, _, body := post(t, s.URL, at, edit); status != 409 || !strings.Contains(body, `value="Review 3"`) {
		t.Fatalf("stale edit: %d\n%s", status, body)
	}
	if status, _, _ := post(t, s.URL, at+"/cancel", url.Values{"version": {"1"}, "confirm": {"yes"}}); status != 409 {
		t.Fatalf("stale cancel: %d", status)
	}
	// Cancel asks first: the button's post shows what it will do; only the
	// confirmation's post cancels.
	status, stay, body := post(t, s.URL, at+"/cancel", url.Values{"version": {"2"}})
	if status != 200 || stay != at+"/cancel" || !strings.Contains(body, "Cancel “Review 2”?") || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Fatalf("cancel without confirming: %d at %s, want the confirm page\n%s", status, stay, body)
	}
	if _, page := get(t, s.URL+at); strings.Contains(page, "This appointment is cancelled") {
		t.Fatal("cancelled before the confirmation")
	}
	if status, _, body := post(t, s.URL, at+"/cancel", url.Values{"version": {"2"}, "confirm": {"yes"}}); status != 200 || !strings.Contains(body, "Appointment cancelled: its participants are sent a cancellation.") {
		t.Fatalf("cancel: %d\n%s", status, body)
	}

	_, page = get(t, s.URL+"/contacts")
	for _, want := range []string{"Ada &lt;Lovelace&gt;", "Grace", "connection refused", "follows the feed (holds the follower lease)"} {
		if !strings.Contains(page, want) {
			t.Errorf("contacts page lacks %q", want)
		}
	}
	if _, page = get(t, s.URL+"/contacts/7"); !strings.Contains(page, "/contacts/7/calendar.ics") {
		t.Error("contact page lacks its iCal link")
	}
	// Every page links to the other services (derived here from the URLs
	// calendar calls them at), and a contact to its page in contacts.
	for _, want := range []string{`<nav class="services" aria-label="syndic services"><a href="http://127.0.0.1:1">Contacts</a> <a href="/">Calendar</a> <a href="http://127.0.0.1:1">Notifications</a></nav>`,
		`<a href="http://127.0.0.1:1/contacts/7" class="button">Change Ada &lt;Lovelace&gt; in contacts</a>`} {
		if !strings.Contains(page, want) {
			t.Errorf("contact page lacks %s", want)
		}
	}
	for _, path := range []string{"/appointments/999", "/appointments/x/edit", "/contacts/999"} {
		if status, _ := get(t, s.URL+path); status != 404 {
			t.Errorf("%s: %d, want 404", path, status)
		}
	}
}

// TestLongContactLists: the contacts page pages and searches; the form
// lists the first contacts and finds others by name or email, without
// JavaScript, keeping what was typed and ticked and saving nothing.
func TestLongContactLists(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{})
	var cs []feedContact
	for i := range 130 {
		cs = append(cs, feedContact{ID: int64(i + 1), Name: fmt.Sprintf("Person %03d", i+1), Email: fmt.Sprintf("p%d@example.org", i+1)})
	}
	cs = append(cs, feedContact{ID: 500, Name: "ada Lovelace", Email: "ada@example.org"})
	s.seed(t, cs...)

	_, page := get(t, s.URL+"/contacts")
	if n := strings.Count(page, `<tr><td><a href="/contacts/`); n != 100 || !strings.Contains(page, `href="/contacts?offset=100" rel="next"`) || !strings.Contains(page, ">ada Lovelace<") {
		t.Fatalf("first page: %d rows, want 100 (ada first: case doesn't count) and a next link", n)
	}
	if _, page = get(t, s.URL+"/contacts?offset=100"); strings.Count(page, `<tr><td><a href="/contacts/`) != 31 || !strings.Contains(page, `rel="prev"`) {
		t.Fatal("second page: want the other 31 and a previous link")
	}
	if _, page = get(t, s.URL+"/contacts?q=P12%40"); strings.Count(page, `<tr><td><a href="/contacts/`) != 1 || !strings.Contains(page, "p12@example.org") {
		t.Fatalf("search by email: %s", page)
	}

	if _, page = get(t, s.URL+"/appointments/new"); strings.Count(page, `name="participants"`) != htmlFindLimit || !strings.Contains(page, "More contacts exist") {
		t.Fatalf("new form: %d checkboxes, want %d and a word that there are more", strings.Count(page, `name="participants"`), htmlFindLimit)
	}
	form := url.Values{"title": {"Review"}, "starts_at": {"2030-01-15T09:30"}, "ends_at": {"2030-01-15T10:30"}, "timezone": {"UTC"},
		"participants": {"3"}, "find": {"person 12"}, "action": {"find"}}
	status, at, page := post(t, s.URL, "/appointments", form)
	if status != 200 || at != "/appointments" || !strings.Contains(page, `value="Review"`) ||
		!strings.Contains(page, `value="3" checked`) || !strings.Contains(page, "Person 120") || strings.Contains(page, "Person 099") {
		t.Fatalf("find: %d at %s, want the form again with the input kept, Person 3 ticked and the 12x matches:\n%s", status, at, page)
	}
	if _, list := get(t, s.URL+"/"); strings.Contains(list, "Review") {
		t.Fatal("finding participants created the appointment")
	}
	form.Del("action")
	form.Set("participants", "120")
	if status, at, _ := post(t, s.URL, "/appointments", form); status != 200 || !strings.HasPrefix(at, "/appointments/") {
		t.Fatalf("create after finding: %d at %s", status, at)
	}
}

// TestUpcomingPages: the upcoming list shows 50 a page, in start order,
// with links on and back.
func TestUpcomingPages(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{})
	start := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Hour)
	for i := range htmlListLimit + 3 {
		at := start.Add(time.Duration(i) * time.Hour)
		if status, data, _ := do(t, "POST", s.URL+"/api/appointments", map[string]any{"title": fmt.Sprintf("Meeting %02d", i),
			"starts_at": at.Format(time.RFC3339), "ends_at": at.Add(30 * time.Minute).Format(time.RFC3339)}); status != 201 {
			t.Fatalf("create: %d %s", status, data)
		}
	}
	_, first := get(t, s.URL+"/")
	if n := strings.Count(first, ">Meeting "); n != htmlListLimit || !strings.Contains(first, `href="/?offset=50" rel="next"`) || strings.Contains(first, ">Meeting 50<") {
		t.Fatalf("first page: %d meetings, want the first %d and a link on", n, htmlListLimit)
	}
	if _, second := get(t, s.URL+"/?offset=50"); strings.Count(second, ">Meeting ") != 3 || !strings.Contains(second, `rel="prev"`) {
		t.Fatal("second page: want the last 3 and a link back")
	}
}
