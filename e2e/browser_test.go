package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-ical"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/notifications"
	"syndic/shared/browsertest"
	"syndic/shared/smtptest"
)

// TestBrowserStory drives both services' HTML forms in headless Chromium:
// a contact made in contacts arrives in calendar by the feed, is invited
// to an appointment made through the calendar's form, and a later change
// of name in contacts shows everywhere the calendar shows that person.
func TestBrowserStory(t *testing.T) {
	begin := time.Now()
	con := startContacts(t, "", contacts.Config{})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{})
	tab := browsertest.Open(t, 60*time.Second)

	const (
		name    = "Ada Lovelace"
		newName = "Ada King"
		email   = "ada@example.org"
		title   = "Design review"
		when    = "Tue 15 Jan 2030, 09:30–10:30 (Europe/Paris, UTC+01:00)" // the zone kept, and its offset in January
	)

	do, text, value, eval, navigate := tab.Do, tab.Text, tab.Value, tab.Eval, tab.Navigate
	// poll opens base+path again and again until ok holds for the page.
	poll := func(what, page string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			navigate("open "+page, http.StatusOK, chromedp.Navigate(page))
			if ok() {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15 s; %s shows %q", what, page, text("main"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	submit := browsertest.Submit()

	// 1. Create the contact in contacts.
	navigate("open the new contact form", http.StatusOK, chromedp.Navigate(con.URL+"/contacts/new"))
	do("fill the contact form",
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("email"), email),
	)
	contactPage := navigate("submit the new contact", http.StatusOK, submit)
	contactID := browsertest.PathID(t, contactPage, "/contacts/")
	id, _ := strconv.ParseInt(contactID, 10, 64) // the pattern matched digits
	if got := text("main h1"); got != name {
		t.Fatalf("contact page heading = %q, want %q", got, name)
	}

	// 2. In calendar, wait for the contact to arrive by the feed, then
	// make the appointment through the form.
	optionValue := func(who string) string {
		return eval("look for "+who+"'s checkbox", `(() => {
	for (const l of document.querySelectorAll('main fieldset.participants label')) {
		const box = l.querySelector('input[type="checkbox"][name="participants"]');
		if (box && l.textContent.includes(`+jsQuote(who)+`)) return box.value;
	}
	return "";
})()`)
	}
	poll("the contact arrives in the calendar's form", cal.URL+"/appointments/new", func() bool { return optionValue(name) != "" })
	if got := optionValue(name); got != contactID {
		t.Fatalf("%s's checkbox value = %q, want the contact id %s", name, got, contactID)
	}
	box := `main input[type="checkbox"][name="participants"][value="` + contactID + `"]`
	do("fill the appointment form",
		chromedp.SendKeys(chromedp.ID("title"), title),
		chromedp.SetValue(chromedp.ID("starts_at"), "2030-01-15T09:30"),
		chromedp.SetValue(chromedp.ID("ends_at"), "2030-01-15T10:30"),
		chromedp.Clear(chromedp.ID("timezone")), // the form proposes a zone
		chromedp.SendKeys(chromedp.ID("timezone"), "Europe/Paris"),
		chromedp.Click(chromedp.CSS(box)),
	)
	for sel, want := range map[string]string{"#title": title, "#starts_at": "2030-01-15T09:30", "#ends_at": "2030-01-15T10:30", "#timezone": "Europe/Paris"} {
		if got := value(sel); got != want {
			t.Fatalf("before submit, %s value = %q, want %q", sel, got, want)
		}
	}
	if got := eval("read the checkbox", `String(document.querySelector(`+jsQuote(box)+`).checked)`); got != "true" {
		t.Fatalf("%s's checkbox checked = %s, want true", name, got)
	}
	appPage := navigate("submit the new appointment", http.StatusOK, submit)
	appID := browsertest.PathID(t, appPage, "/appointments/")
	if got := text("main h1"); got != title {
		t.Fatalf("appointment heading = %q, want %q", got, title)
	}
	if got := text("main ul.attendees"); !strings.Contains(got, name) || !strings.Contains(got, email) {
		t.Fatalf("appointment attendees = %q, want %s <%s>", got, name, email)
	}
	if got := text("main time"); got != when {
		t.Fatalf("appointment time = %q, want %q", got, when)
	}
	// What the form made is what the API holds: the local time in Paris.
	var got struct {
		StartsAt     string  `json:"starts_at"`
		EndsAt       string  `json:"ends_at"`
		Participants []int64 `json:"participants"`
	}
	newAPI(t, cal.URL).Must(http.StatusOK, "GET", "/api/appointments/"+appID, nil, &got)
	if got.StartsAt != "2030-01-15T09:30:00+01:00" || got.EndsAt != "2030-01-15T10:30:00+01:00" {
		t.Fatalf("API times = %s – %s, want 2030-01-15T09:30:00+01:00 – 2030-01-15T10:30:00+01:00", got.StartsAt, got.EndsAt)
	}
	if want := []int64{id}; !slices.Equal(got.Participants, want) {
		t.Fatalf("API participants = %v, want %v", got.Participants, want)
	}

	// The upcoming list shows it.
	row := func() string {
		return eval("read the upcoming row", `(() => {
	const a = document.querySelector('main table a[href="/appointments/`+appID+`"]');
	return a ? a.textContent + " | " + a.closest("tr").innerText : "";
})()`)
	}
	navigate("open the upcoming list", http.StatusOK, chromedp.Navigate(cal.URL+"/"))
	if r := row(); !strings.HasPrefix(r, title+" | ") || !strings.Contains(r, name) || !strings.Contains(r, "09:30–10:30") {
		t.Fatalf("upcoming row = %q, want the link %q with %s at 09:30–10:30", r, title, name)
	}

	// 3. Rename the contact in contacts, through its edit form.
	navigate("open the contact", http.StatusOK, chromedp.Navigate(con.URL+contactPage))
	navigate("click Edit", http.StatusOK, chromedp.Click(chromedp.CSS(`main a[href="/contacts/`+contactID+`/edit"]`)))
	do("change the name",
		chromedp.Clear(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), newName),
	)
	if p := navigate("save the contact", http.StatusOK, submit); p != contactPage {
		t.Fatalf("after save, path = %q, want %q", p, contactPage)
	}
	if got := text("main h1"); got != newName {
		t.Fatalf("contact heading after rename = %q, want %q", got, newName)
	}

	// 4. The new name reaches the calendar by the feed, and shows
	// everywhere the calendar shows that person.
	poll("the new name reaches the appointment page", cal.URL+appPage, func() bool {
		return strings.Contains(text("main ul.attendees"), newName)
	})
	if got := text("main"); strings.Contains(got, name) {
		t.Fatalf("appointment page still shows %q after the rename: %q", name, got)
	}
	navigate("open the upcoming list", http.StatusOK, chromedp.Navigate(cal.URL+"/"))
	if r := row(); !strings.Contains(r, newName) || strings.Contains(r, name) {
		t.Fatalf("upcoming row after the rename = %q, want %s and not %s", r, newName, name)
	}
	navigate("open the edit form", http.StatusOK, chromedp.Navigate(cal.URL+appPage+"/edit"))
	if got := optionValue(newName); got != contactID {
		t.Fatalf("edit form: %s's checkbox value = %q, want %s", newName, got, contactID)
	}
	if got := eval("read the checkbox", `String(document.querySelector(`+jsQuote(box)+`).checked)`); got != "true" {
		t.Fatalf("edit form: %s's checkbox checked = %s, want true", newName, got)
	}
	navigate("open the calendar's contact page", http.StatusOK, chromedp.Navigate(cal.URL+"/contacts/"+contactID))
	if got := text("main h1"); got != newName {
		t.Fatalf("calendar contact heading = %q, want %q", got, newName)
	}
	if got := text("main table"); !strings.Contains(got, title) || !strings.Contains(got, newName) {
		t.Fatalf("calendar contact's appointments = %q, want %q with %s", got, title, newName)
	}
	navigate("open the calendar's contacts", http.StatusOK, chromedp.Navigate(cal.URL+"/contacts"))
	if got := text("main table"); !strings.Contains(got, newName) || strings.Contains(got, name) {
		t.Fatalf("calendar contacts = %q, want %s and not %s", got, newName, name)
	}
	// Calendar apps see the new name too.
	_, _, doc := fetchICal(t, cal.URL+"/calendar.ics", "")
	events := doc.Events()
	if len(events) != 1 {
		t.Fatalf("calendar.ics has %d events, want 1", len(events))
	}
	if att := events[0].Props.Values(ical.PropAttendee); len(att) != 1 || att[0].Params.Get(ical.ParamCommonName) != newName || att[0].Value != "mailto:"+email {
		t.Fatalf("calendar.ics attendees = %+v, want CN=%s mailto:%s", att, newName, email)
	}
	t.Logf("browser story took %v", time.Since(begin).Round(time.Millisecond))
}

// TestICalParsesBack checks that the iCal calendars, read back with
// go-ical's decoder, hold exactly the appointments the JSON API made: the
// text as typed (hostile characters included), the same instants, the
// attendees, and the cancelled one marked so; a contact's calendar holds
// only that contact's appointments, and a conditional GET answers 304.
func TestICalParsesBack(t *testing.T) {
	con := startContacts(t, "", contacts.Config{})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{})
	ca, ka := newAPI(t, con.URL), newAPI(t, cal.URL)

	type person struct {
		ID    int64  `json:"id"`
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	var grace, alan person
	ca.Must(http.StatusCreated, "POST", "/api/contacts", map[string]string{"name": "Grace Hopper", "email": "grace@example.org"}, &grace)
	ca.Must(http.StatusCreated, "POST", "/api/contacts", map[string]string{"name": "Alan Turing", "email": "alan+cal@example.org"}, &alan)

	deadline := time.Now().Add(15 * time.Second)
	for {
		var l struct{ Items []person }
		ka.Must(http.StatusOK, "GET", "/api/contacts", nil, &l)
		if slices.ContainsFunc(l.Items, func(p person) bool { return p == grace }) && slices.ContainsFunc(l.Items, func(p person) bool { return p == alan }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calendar's contacts after 15 s = %+v, want %+v and %+v", l.Items, grace, alan)
		}
		time.Sleep(10 * time.Millisecond)
	}

	type appointment struct {
		ID           int64   `json:"id"`
		Title        string  `json:"title"`
		StartsAt     string  `json:"starts_at"`
		EndsAt       string  `json:"ends_at"`
		Location     string  `json:"location"`
		Participants []int64 `json:"participants"`
		Status       string  `json:"status"`
	}
	inputs := []appointment{
		{Title: `Lunch, "quoted"; <b>&</b> \ and 🎉`, StartsAt: "2030-03-01T12:00:00+01:00", EndsAt: "2030-03-01T13:30:00+01:00",
			// Long enough to be folded, with emoji across the fold.
			Location: `Café «Zürich», 1st floor; room \2: ` + strings.Repeat("🎉", 20), Participants: []int64{grace.ID, alan.ID}},
		{Title: "Stand-up", StartsAt: "2030-03-02T09:15:00-05:30", EndsAt: "2030-03-02T09:30:00-05:30", Participants: []int64{grace.ID}},
		{Title: "Retro across midnight", StartsAt: "2030-03-03T23:30:00+09:00", EndsAt: "2030-03-04T00:15:00+09:00", Location: "Tokyo",
			Participants: []int64{alan.ID}},
	}
	apps := make([]appointment, len(inputs))
	for i, in := range inputs {
		ka.Must(http.StatusCreated, "POST", "/api/appointments", map[string]any{
			"title": in.Title, "starts_at": in.StartsAt, "ends_at": in.EndsAt, "location": in.Location, "participants": in.Participants}, &apps[i])
		if apps[i].Title != in.Title || apps[i].StartsAt != in.StartsAt || apps[i].EndsAt != in.EndsAt || apps[i].Location != in.Location {
			t.Fatalf("created %+v, want %+v", apps[i], in)
		}
	}
	cancelled := apps[1]
	ka.Must(http.StatusOK, "DELETE", fmt.Sprintf("/api/appointments/%d", cancelled.ID), nil, nil)
	for i := range apps { // read back, with the status the API now gives
		ka.Must(http.StatusOK, "GET", fmt.Sprintf("/api/appointments/%d", apps[i].ID), nil, &apps[i])
	}
	if apps[1].Status != calendar.StatusCancelled {
		t.Fatalf("after DELETE, status = %q, want %q", apps[1].Status, calendar.StatusCancelled)
	}
	emails := map[int64]string{grace.ID: grace.Email, alan.ID: alan.Email}
	names := map[int64]string{grace.ID: grace.Name, alan.ID: alan.Name}

	// check compares one calendar document with the appointments it must
	// hold, in start order.
	check := func(path string, want []appointment) {
		t.Helper()
		_, _, doc := fetchICal(t, cal.URL+path, "")
		events := doc.Events()
		if len(events) != len(want) {
			t.Fatalf("%s: %d events, want %d", path, len(events), len(want))
		}
		for i, ev := range events {
			a := want[i]
			prefix := fmt.Sprintf("%s event %d", path, i)
			text := func(name string) string {
				t.Helper()
				if ev.Props.Get(name) == nil {
					return ""
				}
				s, err := ev.Props.Text(name)
				if err != nil {
					t.Fatalf("%s %s: %v", prefix, name, err)
				}
				return s
			}
			if uid, want := text(ical.PropUID), fmt.Sprintf("appointment-%d@", a.ID); !strings.HasPrefix(uid, want) {
				t.Fatalf("%s UID = %q, want %s… (appointments in start order)", prefix, uid, want)
			}
			if got := text(ical.PropSummary); got != a.Title {
				t.Fatalf("%s SUMMARY = %q, want %q", prefix, got, a.Title)
			}
			if got := text(ical.PropLocation); got != a.Location {
				t.Fatalf("%s LOCATION = %q, want %q", prefix, got, a.Location)
			}
			for _, tm := range []struct {
				name string
				get  func(*time.Location) (time.Time, error)
				api  string
			}{{"DTSTART", ev.DateTimeStart, a.StartsAt}, {"DTEND", ev.DateTimeEnd, a.EndsAt}} {
				got, err := tm.get(time.UTC)
				if err != nil {
					t.Fatalf("%s %s: %v", prefix, tm.name, err)
				}
				want, _ := time.Parse(time.RFC3339, tm.api)
				if !got.Equal(want) {
					t.Fatalf("%s %s = %v, want %v (%s)", prefix, tm.name, got, want.UTC(), tm.api)
				}
			}
			status, err := ev.Status()
			if err != nil {
				t.Fatalf("%s STATUS: %v", prefix, err)
			}
			wantStatus := ical.EventConfirmed
			if a.Status == calendar.StatusCancelled {
				wantStatus = ical.EventCancelled
			}
			if status != wantStatus {
				t.Fatalf("%s STATUS = %q, want %q", prefix, status, wantStatus)
			}
			var gotAtt, wantAtt []string
			for _, p := range ev.Props.Values(ical.PropAttendee) {
				gotAtt = append(gotAtt, p.Params.Get(ical.ParamCommonName)+" "+p.Value)
			}
			for _, id := range a.Participants {
				wantAtt = append(wantAtt, names[id]+" mailto:"+emails[id])
			}
			slices.Sort(gotAtt)
			slices.Sort(wantAtt)
			if !slices.Equal(gotAtt, wantAtt) {
				t.Fatalf("%s ATTENDEE = %q, want %q", prefix, gotAtt, wantAtt)
			}
		}
	}
	check("/calendar.ics", apps)
	check(fmt.Sprintf("/contacts/%d/calendar.ics", grace.ID), []appointment{apps[0], apps[1]})
	check(fmt.Sprintf("/contacts/%d/calendar.ics", alan.ID), []appointment{apps[0], apps[2]})

	// Calendar apps poll: an unchanged calendar answers 304 to its ETag,
	// and a change gives a new one.
	for _, path := range []string{"/calendar.ics", fmt.Sprintf("/contacts/%d/calendar.ics", grace.ID)} {
		status, h, _ := fetchICal(t, cal.URL+path, "")
		etag := h.Get("ETag")
		if status != http.StatusOK || etag == "" {
			t.Fatalf("GET %s: status %d, ETag %q, want 200 with an ETag", path, status, etag)
		}
		if status, h, _ = fetchICal(t, cal.URL+path, etag); status != http.StatusNotModified {
			t.Fatalf("GET %s with If-None-Match %s: status %d, want 304", path, etag, status)
		}
		if h.Get("ETag") != etag {
			t.Fatalf("GET %s 304: ETag %q, want %q", path, h.Get("ETag"), etag)
		}
	}
	_, h, _ := fetchICal(t, cal.URL+"/calendar.ics", "")
	etag := h.Get("ETag")
	ka.Must(http.StatusOK, "DELETE", fmt.Sprintf("/api/appointments/%d", apps[0].ID), nil, nil)
	status, h, doc := fetchICal(t, cal.URL+"/calendar.ics", etag)
	if status != http.StatusOK || h.Get("ETag") == etag {
		t.Fatalf("after a cancel, GET /calendar.ics with the old ETag: status %d, ETag %q, want 200 and a new ETag", status, h.Get("ETag"))
	}
	if st, err := doc.Events()[0].Status(); err != nil || st != ical.EventCancelled {
		t.Fatalf("after its cancel, the first event's STATUS = %q (%v), want CANCELLED", st, err)
	}
}

// fetchICal GETs an iCal calendar, with If-None-Match when etag is set, and
// returns the status, the header and (for 200) the decoded calendar, checking
// that 200 comes as text/calendar.
func fetchICal(t *testing.T, u, etag string) (int, http.Header, *ical.Calendar) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if etag == "" {
			t.Fatalf("GET %s: status %d, want 200", u, resp.StatusCode)
		}
		return resp.StatusCode, resp.Header, nil
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/calendar") {
		t.Fatalf("GET %s: Content-Type %q, want text/calendar", u, ct)
	}
	cal, err := ical.NewDecoder(resp.Body).Decode()
	if err != nil {
		t.Fatalf("GET %s: decode: %v", u, err)
	}
	return resp.StatusCode, resp.Header, cal
}

// jsQuote quotes s as a JavaScript string literal.
func jsQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestBrowserTimeZone: booked in Europe/Paris for 10:00 in January through
// the form and moved to July without touching the zone, the appointment is
// at 10:00 Paris time in July — on its page, in the edit form, in
// /calendar.ics (TZID and VTIMEZONE, parsed back with go-ical) and in the
// change mail.
func TestBrowserTimeZone(t *testing.T) {
	smtp := smtptest.Start(t)
	con := startContacts(t, "", contacts.Config{})
	notif := startNotifications(t, "", notifications.Config{SMTPURL: smtp.URL})
	cal := startCalendar(t, "", con.URL+"/feed", calendar.Config{NotificationsURL: notif.URL})
	ada := addAda(t, newAPI(t, con.URL), newAPI(t, cal.URL))
	tab := browsertest.Open(t, 60*time.Second)
	submit := browsertest.Submit()
	box := fmt.Sprintf(`main input[type="checkbox"][name="participants"][value="%d"]`, ada.ID)

	tab.Navigate("open the new appointment form", http.StatusOK, chromedp.Navigate(cal.URL+"/appointments/new"))
	tab.Do("book 10:00 Paris time in January",
		chromedp.SendKeys(chromedp.ID("title"), "Review"),
		chromedp.SetValue(chromedp.ID("starts_at"), "2027-01-04T10:00"),
		chromedp.SetValue(chromedp.ID("ends_at"), "2027-01-04T11:00"),
		chromedp.Clear(chromedp.ID("timezone")),
		chromedp.SendKeys(chromedp.ID("timezone"), "Europe/Paris"),
		chromedp.Click(chromedp.CSS(box)),
	)
	page := tab.Navigate("create", http.StatusOK, submit)
	if got := tab.Text("main time"); got != "Mon 4 Jan 2027, 10:00–11:00 (Europe/Paris, UTC+01:00)" {
		t.Fatalf("after booking: %q", got)
	}
	smtp.WaitFor(t, 1, 20*time.Second) // the invitation

	tab.Navigate("open the edit form", http.StatusOK, chromedp.Click(chromedp.CSS(`main a[href="`+page+`/edit"]`)))
	if got := tab.Value("#timezone"); got != "Europe/Paris" {
		t.Fatalf("the edit form's zone = %q, want Europe/Paris preselected", got)
	}
	tab.Do("move it to July, the zone untouched",
		chromedp.SetValue(chromedp.ID("starts_at"), "2027-07-05T10:00"),
		chromedp.SetValue(chromedp.ID("ends_at"), "2027-07-05T11:00"),
	)
	tab.Navigate("save", http.StatusOK, submit)
	if got := tab.Text("main time"); got != "Mon 5 Jul 2027, 10:00–11:00 (Europe/Paris, UTC+02:00)" {
		t.Fatalf("after the move: %q", got)
	}
	tab.Navigate("open the edit form again", http.StatusOK, chromedp.Click(chromedp.CSS(`main a[href="`+page+`/edit"]`)))
	if start, zone := tab.Value("#starts_at"), tab.Value("#timezone"); start != "2027-07-05T10:00" || zone != "Europe/Paris" {
		t.Fatalf("edit form after the move: %s %s, want 2027-07-05T10:00 Europe/Paris", start, zone)
	}

	resp, body := request(t, freshClient(), "GET", cal.URL+"/calendar.ics", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/calendar.ics: %d", resp.StatusCode)
	}
	doc, err := ical.NewDecoder(strings.NewReader(body)).Decode()
	if err != nil {
		t.Fatal(err)
	}
	ev := doc.Events()[0]
	if dt := ev.Props.Get(ical.PropDateTimeStart); dt.Params.Get(ical.PropTimezoneID) != "Europe/Paris" || dt.Value != "20270705T100000" {
		t.Fatalf("DTSTART %+v", dt)
	}
	if start, err := ev.DateTimeStart(nil); err != nil || !start.Equal(time.Date(2027, 7, 5, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("DTSTART parsed back: %v %v, want 08:00 UTC", start, err)
	}
	if !strings.Contains(body, "BEGIN:VTIMEZONE\r\nTZID:Europe/Paris") {
		t.Fatalf("no VTIMEZONE for Europe/Paris:\n%s", body)
	}

	mails := smtp.WaitFor(t, 2, 20*time.Second)
	change := parseInvite(t, mails[1])
	if !strings.Contains(change.Text, "When:  Mon 5 Jul 2027, 10:00–11:00 (Europe/Paris, UTC+02:00)") || !strings.Contains(change.Text, "has changed: the time") {
		t.Fatalf("the change mail:\n%s", change.Text)
	}
}
