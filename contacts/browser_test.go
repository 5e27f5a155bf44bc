package contacts

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"syndic/shared/browsertest"
	"syndic/shared/feed"
)

// TestBrowserContactLifecycle drives the HTML forms in headless Chromium:
// a create refused for a bad email, a create, an edit and a delete, and
// then checks that the feed holds exactly the three events they made.
func TestBrowserContactLifecycle(t *testing.T) {
	start := time.Now()
	base := runService(t, Config{})
	tab := browsertest.Open(t, 60*time.Second)

	const (
		name     = "Zoë Ångström"
		badEmail = "zoe-at-example.org"
		email    = "zoe@example.org"
		newEmail = "zoe.angstrom@example.net"
		phone    = "+44 20 7946 0000"
	)

	do, text, value, present, navigate := tab.Do, tab.Text, tab.Value, tab.Present, tab.Navigate
	submit := browsertest.Submit()

	// 1. A bad email is refused beside the field, and what was typed stays.
	if got := navigate("open the new contact form", http.StatusOK, chromedp.Navigate(base+"/contacts/new")); got != "/contacts/new" {
		t.Fatalf("new contact form path = %q, want /contacts/new", got)
	}
	do("fill the form with a bad email",
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("email"), badEmail),
		chromedp.SendKeys(chromedp.ID("phone"), phone),
	)
	if got := navigate("submit a bad email", http.StatusBadRequest, submit); got != "/contacts" {
		t.Fatalf("after a bad email, path = %q, want /contacts (the form again)", got)
	}
	if got := text("span.problem#email-problem"); !strings.HasPrefix(got, "Email ") || !strings.Contains(got, "valid email") {
		t.Fatalf("email problem = %q, want Email ... not a valid email address", got)
	}
	for _, sel := range []string{"#name-problem", "#phone-problem"} {
		if present(sel) {
			t.Fatalf("%s is shown for a valid field: %q", sel, text(sel))
		}
	}
	for sel, want := range map[string]string{"#name": name, "#email": badEmail, "#phone": phone} {
		if got := value(sel); got != want {
			t.Fatalf("after a bad email, %s value = %q, want %q (what was typed)", sel, got, want)
		}
	}
	if events := feedEvents(t, base); len(events) != 0 {
		t.Fatalf("after a refused form, feed has %d events, want 0: %+v", len(events), events)
	}

	// 2. Fix the email and submit: the contact's page shows it.
	do("correct the email",
		chromedp.Clear(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), email),
	)
	page := navigate("submit the new contact", http.StatusOK, submit)
	id := browsertest.PathID(t, page, "/contacts/")
	if got := text("main h1"); got != name {
		t.Fatalf("contact page heading = %q, want %q", got, name)
	}
	if got := text(`main dd a[href^="mailto:"]`); got != email {
		t.Fatalf("contact page email = %q, want %q", got, email)
	}

	// 3. Edit: change the email and save.
	if got := navigate("click Edit", http.StatusOK, chromedp.Click(chromedp.CSS(`main a[href="/contacts/`+id+`/edit"]`))); got != "/contacts/"+id+"/edit" {
		t.Fatalf("edit form path = %q, want /contacts/%s/edit", got, id)
	}
	if got := value("#email"); got != email {
		t.Fatalf("edit form email = %q, want %q", got, email)
	}
	if got := text(`main form button[type="submit"]`); got != "Save changes" {
		t.Fatalf("edit form button = %q, want Save changes", got)
	}
	do("change the email",
		chromedp.Clear(chromedp.ID("email")),
		chromedp.SendKeys(chromedp.ID("email"), newEmail),
	)
	if got := navigate("save changes", http.StatusOK, submit); got != page {
		t.Fatalf("after save, path = %q, want %q", got, page)
	}
	if got := text(`main dd a[href^="mailto:"]`); got != newEmail {
		t.Fatalf("contact page email after edit = %q, want %q", got, newEmail)
	}
	if got := text("main h1"); got != name {
		t.Fatalf("contact page heading after edit = %q, want %q", got, name)
	}

	if got := text("main p.notice"); got != "Changes saved." {
		t.Fatalf("after save, the notice = %q, want Changes saved.", got)
	}

	// 4. Delete asks first; once confirmed, back on the list, and the
	// contact is gone.
	if got := navigate("click Delete", http.StatusOK, chromedp.Click(chromedp.CSS("form.delete button"))); got != "/contacts/"+id+"/delete" {
		t.Fatalf("after Delete, path = %q, want the confirm page", got)
	}
	if got := text("main h1"); got != "Delete "+name+"?" {
		t.Fatalf("confirm page heading = %q", got)
	}
	if got := navigate("confirm the delete", http.StatusOK, chromedp.Click(chromedp.CSS("form.confirm button"))); got != "/" {
		t.Fatalf("after confirming, path = %q, want /", got)
	}
	if got := text("main p.notice"); got != "Contact deleted." {
		t.Fatalf("after delete, the notice = %q, want Contact deleted.", got)
	}
	if present(`a[href="/contacts/` + id + `"]`) {
		t.Fatalf("the list still links to %s after delete", page)
	}
	if got := text("main"); strings.Contains(got, name) {
		t.Fatalf("the list still shows %q after delete: %q", name, got)
	}
	navigate("open the deleted contact", http.StatusNotFound, chromedp.Navigate(base+page))

	// The feed holds exactly what the forms did, in order.
	events := feedEvents(t, base)
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
	}
	wantTypes := []string{"contact.created", "contact.updated", "contact.deleted"}
	if !slices.Equal(types, wantTypes) {
		t.Fatalf("feed event types = %v, want %v", types, wantTypes)
	}
	for i, e := range events {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d seq = %d, want %d", i, e.Seq, i+1)
		}
	}
	for i, want := range []struct{ name, email string }{{name, email}, {name, newEmail}} {
		var got struct{ Name, Email string }
		if err := json.Unmarshal(events[i].Data, &got); err != nil {
			t.Fatalf("%s data %s: %v", events[i].Type, events[i].Data, err)
		}
		if got.Name != want.name || got.Email != want.email {
			t.Fatalf("%s data name, email = %q, %q, want %q, %q", events[i].Type, got.Name, got.Email, want.name, want.email)
		}
	}
	t.Logf("browser lifecycle took %v", time.Since(start).Round(time.Millisecond))
}

// feedEvents fetches /feed with net/http and returns its events.
func feedEvents(t *testing.T, base string) []feed.Event {
	t.Helper()
	resp, err := http.Get(base + "/feed")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /feed status = %d, want %d", resp.StatusCode, http.StatusOK)
	}
	p, err := feed.Parse(resp.Body)
	if err != nil {
		t.Fatalf("parse /feed: %v", err)
	}
	return p.Events
}

// TestBrowserReadsTheFeed: a browser opening /feed shows it as a page —
// the stylesheet the document names is applied (same-origin, allowed by
// the CSP), entries as blocks, the machine part hidden — not raw XML.
func TestBrowserReadsTheFeed(t *testing.T) {
	base := runService(t, Config{})
	c := newClient(t, base)
	c.create(Input{Name: "Ada Lovelace", Email: "ada@example.org"})
	tab := browsertest.Open(t, 60*time.Second)
	tab.Navigate("open the feed", http.StatusOK, chromedp.Navigate(base+"/feed"))
	got := tab.Eval("the feed's computed styles", `(() => {
		const e = document.getElementsByTagName("entry")[0];
		const ev = document.getElementsByTagNameNS("urn:syndic:event", "event")[0];
		return [document.styleSheets.length, getComputedStyle(document.documentElement).display,
			getComputedStyle(e).display, getComputedStyle(ev).display].join(" ");
	})()`)
	if got != "1 block block none" {
		t.Fatalf("stylesheets, feed, entry and ev:event display = %q, want \"1 block block none\"", got)
	}
}
