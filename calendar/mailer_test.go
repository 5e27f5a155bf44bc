package calendar

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-ical"

	"syndic/shared/servicetest"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// testMailer words the mails of the Mailer and Notifier tests.
var testMailer = Mailer{ICal: ICalOptions{BaseURL: "https://calendar.example.org/", Host: "calendar.example.org"}}

// openMailStore opens a store on url whose notifications testMailer words.
func openMailStore(t testing.TB, url string) (*SQLStore, *sqldb.DB) {
	t.Helper()
	db := servicetest.OpenDB(t, url)
	s, err := NewSQLStore(context.Background(), db, testMailer)
	if err != nil {
		t.Fatal(err)
	}
	return s, db
}

// Contacts of the Mailer and Notifier tests, by id.
var mailContacts = []feedContact{
	{ID: 7, Name: "Ada Lovelace", Email: "ada@example.org", Version: 1},
	{ID: 8, Name: "Bob Byte", Email: "bob@example.org", Version: 1},
	{ID: 9, Name: "Cy Young", Email: "cy@example.org", Version: 1},
	{ID: 10, Name: "Dee Parted", Email: "dee@example.org", Version: 1},
	{ID: 11, Name: "Eve Nomail", Version: 1},
}

func seedMailContacts(t testing.TB, db *sqldb.DB) {
	t.Helper()
	for i, c := range mailContacts {
		applyContact(t, db, int64(i+1), contactCreated, c)
	}
}

// mailInput is an appointment in UTC+01:00 with the given participants.
func mailInput(title string, participants ...int64) Input {
	return Input{Title: title, StartsAt: "2030-12-03T09:30:00+01:00", EndsAt: "2030-12-03T10:30:00+01:00",
		Location: "Room 1", Participants: participants}.Normalize()
}

// newEntries returns the outbox entries of appointment id written since the
// first seen, by recipient, failing t if anyone got two.
func newEntries(t *testing.T, s *SQLStore, id int64, seen *int) map[string]OutboxEntry {
	t.Helper()
	all, err := s.Notifications(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]OutboxEntry{}
	for _, e := range all[*seen:] {
		if _, dup := out[e.To]; dup {
			t.Errorf("two entries to %s in one change", e.To)
		}
		out[e.To] = e
	}
	*seen = len(all)
	return out
}

// checkKinds checks that got holds one entry of the given kind for each
// address in want, and nothing else.
func checkKinds(t *testing.T, got map[string]OutboxEntry, want map[string]string) {
	t.Helper()
	for to, e := range got {
		if kind, ok := want[to]; !ok {
			t.Errorf("%s entry to %s, want none", e.Kind, to)
		} else if e.Kind != kind {
			t.Errorf("entry to %s is a %s, want %s", to, e.Kind, kind)
		}
	}
	for to, kind := range want {
		if _, ok := got[to]; !ok {
			t.Errorf("no %s to %s", kind, to)
		}
	}
}

// checkCalendar parses e's calendar part with go-ical and checks it holds
// appointment a as of version, with METHOD method.
func checkCalendar(t *testing.T, e OutboxEntry, method string, a Appointment, status string, attendees ...string) {
	t.Helper()
	cal := decodeICal(t, []byte(e.Calendar))
	if got := propText(t, cal.Props, ical.PropMethod); got != method {
		t.Errorf("%s to %s: METHOD = %q, want %q", e.Kind, e.To, got, method)
	}
	evs := cal.Events()
	if len(evs) != 1 {
		t.Fatalf("%s to %s: %d events, want 1", e.Kind, e.To, len(evs))
	}
	p := evs[0].Props
	if got, want := propText(t, p, ical.PropUID), fmt.Sprintf("appointment-%d@calendar.example.org", a.ID); got != want {
		t.Errorf("%s to %s: UID = %q, want %q", e.Kind, e.To, got, want)
	}
	if seq, want := p.Get(ical.PropSequence), fmt.Sprint(a.Version-1); seq == nil || seq.Value != want {
		t.Errorf("%s to %s: SEQUENCE = %v, want %s", e.Kind, e.To, seq, want)
	}
	if got := propText(t, p, ical.PropStatus); got != status {
		t.Errorf("%s to %s: STATUS = %q, want %q", e.Kind, e.To, got, status)
	}
	if got := propText(t, p, ical.PropSummary); got != a.Title {
		t.Errorf("%s to %s: SUMMARY = %q, want %q", e.Kind, e.To, got, a.Title)
	}
	if org := p.Get(ical.PropOrganizer); org == nil || org.Value != "mailto:calendar@calendar.example.org" {
		t.Errorf("%s to %s: ORGANIZER = %v, want mailto:calendar@calendar.example.org", e.Kind, e.To, org)
	}
	var got []string
	for _, at := range p.Values(ical.PropAttendee) {
		got = append(got, strings.TrimPrefix(at.Value, "mailto:"))
	}
	slices.Sort(got)
	slices.Sort(attendees)
	if !slices.Equal(got, attendees) {
		t.Errorf("%s to %s: ATTENDEEs %q, want %q", e.Kind, e.To, got, attendees)
	}
}

// TestMailer follows one appointment through creation, a change of
// participants and its cancellation, and checks who is told what.
func TestMailer(t *testing.T) {
	ctx := context.Background()
	s, db := openMailStore(t, sqldbtest.SQLiteURL(t))
	seedMailContacts(t, db)
	seen := 0

	// Created with Ada, Bob, Dee and Eve (who has no address).
	a, err := s.Create(ctx, mailInput("Design review", 7, 8, 10, 11))
	if err != nil {
		t.Fatal(err)
	}
	created := newEntries(t, s, a.ID, &seen)
	checkKinds(t, created, map[string]string{
		"ada@example.org": KindInvitation, "bob@example.org": KindInvitation, "dee@example.org": KindInvitation,
	})
	t.Run("invitation", func(t *testing.T) {
		e := created["ada@example.org"]
		if want := "Invitation: Design review — Tue 3 Dec 2030 09:30 (UTC+01:00)"; e.Subject != want {
			t.Errorf("subject = %q, want %q", e.Subject, want)
		}
		for _, want := range []string{
			"Hello Ada Lovelace,\n",
			"you are invited to “Design review”.",
			"When:  Tue 3 Dec 2030, 09:30–10:30 (UTC+01:00)\n",
			"Where: Room 1\n",
			"With:  Ada Lovelace, Bob Byte, Dee Parted, Eve Nomail\n",
			"Details: https://calendar.example.org/appointments/" + fmt.Sprint(a.ID) + "\n",
		} {
			if !strings.Contains(e.Text, want) {
				t.Errorf("text lacks %q:\n%s", want, e.Text)
			}
		}
		if want := fmt.Sprintf("calendar-appointment-%d-v1-contact-7-invitation", a.ID); e.Key != want {
			t.Errorf("key = %q, want %q", e.Key, want)
		}
		if e.AppointmentID != a.ID || e.ContactID != 7 || e.Status != "pending" || e.Attempts != 0 {
			t.Errorf("entry %+v: want appointment %d, contact 7, pending, no attempts", e, a.ID)
		}
		checkCalendar(t, e, "REQUEST", a, "CONFIRMED", "ada@example.org", "bob@example.org", "dee@example.org")
	})

	// Dee is deleted upstream; then Ada is kept, Bob removed, Cy added and
	// Dee, still on it, kept.
	applyContact(t, db, 100, contactDeleted, feedContact{ID: 10, Name: "Dee Parted", Email: "dee@example.org", Version: 2})
	a, err = s.Update(ctx, a.ID, a.Version, mailInput("Design review", 7, 9, 10))
	if err != nil {
		t.Fatal(err)
	}
	changed := newEntries(t, s, a.ID, &seen)
	checkKinds(t, changed, map[string]string{
		"ada@example.org": KindChange, "cy@example.org": KindInvitation, "bob@example.org": KindCancellation,
	})
	t.Run("change", func(t *testing.T) {
		e := changed["ada@example.org"]
		if !strings.HasPrefix(e.Subject, "Changed: Design review — ") {
			t.Errorf("subject = %q, want Changed: …", e.Subject)
		}
		if want := "“Design review” has changed: joining: Cy Young; no longer taking part: Bob"; !strings.Contains(e.Text, want) { // says what changed
			t.Errorf("text lacks %q:\n%s", want, e.Text)
		}
		if want := "With:  Ada Lovelace, Cy Young\n"; !strings.Contains(e.Text, want) {
			t.Errorf("text lacks %q (people deleted upstream are not listed):\n%s", want, e.Text)
		}
		if want := fmt.Sprintf("calendar-appointment-%d-v2-contact-7-change", a.ID); e.Key != want {
			t.Errorf("key = %q, want %q", e.Key, want)
		}
		checkCalendar(t, e, "REQUEST", a, "CONFIRMED", "ada@example.org", "cy@example.org")
	})
	t.Run("removed", func(t *testing.T) {
		e := changed["bob@example.org"]
		if !strings.HasPrefix(e.Subject, "Cancelled: Design review — ") {
			t.Errorf("subject = %q, want Cancelled: …", e.Subject)
		}
		if want := "you are no longer a participant of “Design review”."; !strings.Contains(e.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, e.Text)
		}
		checkCalendar(t, e, "CANCEL", a, "CANCELLED", "ada@example.org", "cy@example.org")
	})

	a, err = s.Cancel(ctx, a.ID, a.Version)
	if err != nil {
		t.Fatal(err)
	}
	cancelled := newEntries(t, s, a.ID, &seen)
	checkKinds(t, cancelled, map[string]string{"ada@example.org": KindCancellation, "cy@example.org": KindCancellation})
	t.Run("cancelled", func(t *testing.T) {
		e := cancelled["cy@example.org"]
		if !strings.HasPrefix(e.Subject, "Cancelled: Design review — ") {
			t.Errorf("subject = %q, want Cancelled: …", e.Subject)
		}
		if want := "“Design review” is cancelled."; !strings.Contains(e.Text, want) {
			t.Errorf("text lacks %q:\n%s", want, e.Text)
		}
		checkCalendar(t, e, "CANCEL", a, "CANCELLED", "ada@example.org", "cy@example.org")
	})
}

// TestMailerLongTitle: a title as long as an appointment may have is
// shortened, with an ellipsis, so that every subject stays within what
// notifications accepts; the date stays whole.
func TestMailerLongTitle(t *testing.T) {
	ctx := context.Background()
	s, db := openMailStore(t, sqldbtest.SQLiteURL(t))
	seedMailContacts(t, db)
	// MaxTitle runes of 1- to 4-octet UTF-8, ending in an X the subject loses.
	title := string([]rune(strings.Repeat("Zürich 🎉 ", MaxTitle/9+1))[:MaxTitle-1]) + "X"
	a, err := s.Create(ctx, mailInput(title, 7, 8))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, a.ID, a.Version, mailInput(title, 7)); err != nil {
		t.Fatal(err)
	}
	es, err := s.Notifications(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, e := range es {
		kinds[e.Kind] = true
		if n := utf8.RuneCountInString(e.Subject); n > maxSubject {
			t.Errorf("%s subject is %d runes, want at most %d: %q", e.Kind, n, maxSubject, e.Subject)
		}
		if !utf8.ValidString(e.Subject) {
			t.Errorf("%s subject is not valid UTF-8: %q", e.Kind, e.Subject)
		}
		if !strings.Contains(e.Subject, "…") || strings.Contains(e.Subject, "X") {
			t.Errorf("%s subject = %q, want the title cut short with …", e.Kind, e.Subject)
		}
		if !strings.HasSuffix(e.Subject, " — Tue 3 Dec 2030 09:30 (UTC+01:00)") {
			t.Errorf("%s subject = %q, want the whole date at the end", e.Kind, e.Subject)
		}
		if !strings.Contains(e.Subject, ": Zürich 🎉 Zürich") {
			t.Errorf("%s subject = %q, want the start of the title", e.Kind, e.Subject)
		}
		if !strings.Contains(e.Text, title) {
			t.Errorf("%s text lacks the whole title", e.Kind)
		}
	}
	for _, k := range []string{KindInvitation, KindChange, KindCancellation} {
		if !kinds[k] {
			t.Errorf("no %s among %d entries", k, len(es))
		}
	}
}

// TestMailerAcrossDays: an appointment that ends on another day says the
// end's day too, in the mail as on its page (an offsite from Friday night
// to Saturday read "22:00 – 02:00" before).
func TestMailerAcrossDays(t *testing.T) {
	a := Appointment{Title: "Offsite", StartsAt: "2027-01-01T22:00:00+01:00", EndsAt: "2027-01-02T02:00:00+01:00", TimeZone: "Europe/Paris"}
	const want = "When:  Fri 1 Jan 2027, 22:00 – Sat 2 Jan 2027, 02:00 (Europe/Paris, UTC+01:00)\n"
	if text := testMailer.text(KindInvitation, a, Attendee{Name: "Ada"}, Appointment{}); !strings.Contains(text, want) {
		t.Fatalf("invitation lacks %q:\n%s", want, text)
	}
}
