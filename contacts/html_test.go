package contacts

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"syndic/shared/config"
	"testing"
)

// form posts values to path like a browser on the same origin and returns
// the status, the final URL and the page.
func form(t *testing.T, base, path string, values url.Values, header ...string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(values.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Request.URL.Path, string(body)
}

func page(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHTMLForms(t *testing.T) {
	t.Parallel()
	base := runService(t, Config{})

	status, _, body := form(t, base, "/contacts", url.Values{"name": {"Ada <b>"}, "email": {"nope"}})
	if status != 400 || !strings.Contains(body, `id="email-problem"`) || !strings.Contains(body, `value="Ada &lt;b&gt;"`) {
		t.Fatalf("invalid form: status %d, want 400 with the problem beside the field and the input kept:\n%s", status, body)
	}
	if _, list := page(t, base, "/"); !strings.Contains(list, "No contacts yet") {
		t.Fatal("an invalid form created a contact")
	}

	status, at, body := form(t, base, "/contacts", url.Values{"name": {"Ada <b>"}, "email": {"ada@example.org"}})
	if status != 200 || !strings.HasPrefix(at, "/contacts/") || !strings.Contains(body, "Ada &lt;b&gt;") || strings.Contains(body, "Ada <b>") {
		t.Fatalf("create: status %d at %s, want the escaped contact page", status, at)
	}
	if !strings.Contains(body, `<p class="notice" role="status">Contact created.`) {
		t.Errorf("create: the page doesn't say the contact was created:\n%s", body)
	}
	at = strings.TrimSuffix(at, "?done=created")

	// A second contact with Ada's email, in another case, is refused with
	// the reason beside the field and the input kept.
	status, _, body = form(t, base, "/contacts", url.Values{"name": {"Ada Again"}, "email": {"ADA@example.org"}})
	if status != 400 || !strings.Contains(body, `id="email-problem"`) || !strings.Contains(body, "is already the email of Ada &lt;b&gt;") || !strings.Contains(body, `value="Ada Again"`) {
		t.Fatalf("duplicate email: status %d, want 400 naming the contact that has it:\n%s", status, body)
	}

	// Two people edit at once: the second save is refused, keeps its input
	// and shows what changed.
	status, _, body = form(t, base, at, url.Values{"name": {"Ada"}, "email": {"ada@example.org"}, "version": {"1"}})
	if status != 200 || !strings.Contains(body, "Changes saved.") {
		t.Fatalf("first edit: status %d, want the page saying it saved", status)
	}
	status, _, body = form(t, base, at, url.Values{"name": {"Ada B"}, "email": {"b@example.org"}, "version": {"1"}})
	if status != 409 || !strings.Contains(body, "Someone else changed") || !strings.Contains(body, `value="b@example.org"`) || !strings.Contains(body, `name="version" value="2"`) {
		t.Fatalf("stale edit: status %d:\n%s", status, body)
	}
	status, _, _ = form(t, base, at+"/delete", url.Values{"version": {"1"}, "confirm": {"yes"}})
	if status != 409 {
		t.Fatalf("stale delete: status %d, want 409", status)
	}

	// A cross-site form post is refused (CSRF).
	status, _, _ = form(t, base, at+"/delete", url.Values{"version": {"2"}, "confirm": {"yes"}}, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if status != http.StatusForbidden {
		t.Fatalf("cross-site delete: status %d, want 403", status)
	}

	// Delete asks first: the button's post shows what will go, and only
	// the confirmation's post deletes.
	status, stay, body := form(t, base, at+"/delete", url.Values{"version": {"2"}})
	if status != 200 || stay != at+"/delete" || !strings.Contains(body, "Delete Ada?") || !strings.Contains(body, `name="confirm" value="yes"`) || !strings.Contains(body, `name="version" value="2"`) {
		t.Fatalf("delete without confirming: status %d at %s, want the confirm page:\n%s", status, stay, body)
	}
	if status, _ := page(t, base, at); status != 200 {
		t.Fatalf("the contact went before the delete was confirmed: status %d", status)
	}
	status, done, body := form(t, base, at+"/delete", url.Values{"version": {"2"}, "confirm": {"yes"}})
	if status != 200 || done != "/" || !strings.Contains(body, "Contact deleted.") {
		t.Fatalf("delete: status %d at %s", status, done)
	}
	if status, body := page(t, base, "/contacts/1"); status != 404 || !strings.Contains(body, "deleted") {
		t.Fatalf("deleted contact page: status %d", status)
	}
	if status, _ := page(t, base, "/contacts/x/edit"); status != 404 {
		t.Fatalf("bad id: status %d", status)
	}
	big := url.Values{"name": {strings.Repeat("a", 2<<20)}, "email": {"a@example.org"}}
	if status, _, _ := form(t, base, "/contacts", big); status != 413 {
		t.Fatalf("oversized form: status %d, want 413", status)
	}
	if status, body := page(t, base, "/static/base.css"); status != 200 || !strings.Contains(body, "body {") {
		t.Fatalf("shared stylesheet: status %d", status)
	}
	if status, body := page(t, base, "/static/favicon.svg"); status != 200 || !strings.Contains(body, "<svg") {
		t.Fatalf("favicon: status %d", status)
	}
	if _, body := page(t, base, "/"); !strings.Contains(body, `<link rel="icon" href="/static/favicon.svg"`) {
		t.Fatal("pages do not name the favicon")
	}
	if status, _ := page(t, base, "/static/style.css"); status != 200 {
		t.Fatalf("contacts stylesheet: status %d", status)
	}
}

// TestLinksToTheOtherServices: with the other services' page URLs set,
// every page links to them.
func TestLinksToTheOtherServices(t *testing.T) {
	t.Parallel()
	base := runService(t, Config{Common: config.Common{CalendarPage: "http://calendar.example/", NotificationsPage: "http://notifications.example"}})
	_, body := page(t, base, "/")
	want := `<nav class="services" aria-label="syndic services"><a href="/">Contacts</a> <a href="http://calendar.example">Calendar</a> <a href="http://notifications.example">Notifications</a></nav>`
	if !strings.Contains(body, want) {
		t.Errorf("the list lacks %s:\n%s", want, body)
	}
}
