package calendar

import (
	"bytes"
	"errors"
	"net/mail"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-ical"
)

// icalTestOptions are the options the iCal tests write with: a hostile
// name and a base URL with a trailing slash.
func icalTestOptions() ICalOptions {
	return ICalOptions{
		Name:    `Ada Lovelace's appointments; "all", \ of them`,
		BaseURL: "https://calendar.example.org/",
		Host:    "calendar.syndic",
	}
}

// longICalTitle is 300 characters of 1- to 4-octet UTF-8 sequences and
// commas, so folding meets every kind of boundary.
func longICalTitle() string { return strings.Repeat("aé€🎉,", 60) }

// icalFixture returns appointments with hostile text, two zone offsets, a
// date change in UTC and a cancelled one.
func icalFixture() []Appointment {
	updated := time.Date(2026, 11, 23, 17, 4, 5, 123456789, time.FixedZone("", 3600))
	created := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	return []Appointment{
		{
			ID: 1, Title: `Lunch, "quoted"; <b>&</b> \ back\slash`,
			StartsAt: "2026-12-01T09:30:00+01:00", EndsAt: "2026-12-01T10:45:00+01:00",
			Location: "Room 1; Building A, Floor 2", Status: StatusConfirmed, Version: 1,
			CreatedAt: created, UpdatedAt: updated,
			Attendees: []Attendee{
				{ID: 7, Name: `Grace "Amazing" Hopper`, Email: "grace@example.org"},
				{ID: 8, Name: "Ada; Lovelace, Countess: of Lovelace", Email: "o'hara+cal@example.org"},
				{ID: 9, Name: "Gone Person", Email: "gone@example.org", Deleted: true},
				{ID: 10, Name: "José 🎉 שלום", Email: "a&b@example.org"},
			},
		},
		{
			ID: 2, Title: "Party 🎉🎉 שלום עליכם", StartsAt: "2026-12-31T23:30:00-05:30",
			EndsAt: "2027-01-01T01:00:00-05:30", Location: "", Status: StatusCancelled, Version: 3,
			CreatedAt: created, UpdatedAt: updated.Add(time.Hour),
		},
		{
			ID: 42, Title: longICalTitle(), StartsAt: "2026-06-15T14:00:00Z", EndsAt: "2026-06-15T15:00:00Z",
			Location: "Café \\ Ünïcødé: 東京, שלום", Status: StatusConfirmed, Version: 7,
			CreatedAt: created, UpdatedAt: updated.Add(2 * time.Hour),
			Attendees: []Attendee{{ID: 11, Name: strings.Repeat("Ünïcødé ", 20), Email: "long@example.org"}},
		},
	}
}

// writeICal returns what WriteICal writes for apps.
func writeICal(t *testing.T, opt ICalOptions, apps []Appointment) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteICal(&b, opt, apps); err != nil {
		t.Fatalf("WriteICal: %v", err)
	}
	return b.Bytes()
}

// decodeICal decodes doc with go-ical, which unfolds and unescapes.
func decodeICal(t *testing.T, doc []byte) *ical.Calendar {
	t.Helper()
	cal, err := ical.NewDecoder(bytes.NewReader(doc)).Decode()
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, doc)
	}
	return cal
}

// propText returns the unescaped text of props' name, or fails.
func propText(t *testing.T, props ical.Props, name string) string {
	t.Helper()
	s, err := props.Text(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s
}

func TestWriteICalRoundTrip(t *testing.T) {
	t.Parallel()
	apps := icalFixture()
	cal := decodeICal(t, writeICal(t, icalTestOptions(), apps))

	for name, want := range map[string]string{
		ical.PropProductID:     "-//syndic//calendar//EN",
		ical.PropVersion:       "2.0",
		ical.PropCalendarScale: "GREGORIAN",
		ical.PropMethod:        "PUBLISH",
		"X-WR-CALNAME":         icalTestOptions().Name,
		ical.PropName:          icalTestOptions().Name,
	} {
		if got := propText(t, cal.Props, name); got != want {
			t.Errorf("calendar %s = %q, want %q", name, got, want)
		}
	}

	type attendee struct{ email, cn string }
	wants := []struct {
		uid, summary, location, url string
		start, end, stamp           time.Time
		status                      ical.EventStatus
		sequence                    int
		attendees                   []attendee
	}{
		{
			uid: "appointment-1@calendar.syndic", summary: apps[0].Title, location: apps[0].Location,
			url:   "https://calendar.example.org/appointments/1",
			start: time.Date(2026, 12, 1, 8, 30, 0, 0, time.UTC), end: time.Date(2026, 12, 1, 9, 45, 0, 0, time.UTC),
			stamp:  time.Date(2026, 11, 23, 16, 4, 5, 0, time.UTC),
			status: ical.EventConfirmed, sequence: 0,
			attendees: []attendee{
				{"grace@example.org", `Grace 'Amazing' Hopper`}, // no DQUOTE in a parameter
				{"o'hara+cal@example.org", "Ada; Lovelace, Countess: of Lovelace"},
				// gone@example.org was deleted upstream: left out.
				{"a&b@example.org", "José 🎉 שלום"},
			},
		},
		{
			uid: "appointment-2@calendar.syndic", summary: apps[1].Title,
			url:   "https://calendar.example.org/appointments/2",
			start: time.Date(2027, 1, 1, 5, 0, 0, 0, time.UTC), end: time.Date(2027, 1, 1, 6, 30, 0, 0, time.UTC),
			stamp:  time.Date(2026, 11, 23, 17, 4, 5, 0, time.UTC),
			status: ical.EventCancelled, sequence: 2,
		},
		{
			uid: "appointment-42@calendar.syndic", summary: apps[2].Title, location: apps[2].Location,
			url:   "https://calendar.example.org/appointments/42",
			start: time.Date(2026, 6, 15, 14, 0, 0, 0, time.UTC), end: time.Date(2026, 6, 15, 15, 0, 0, 0, time.UTC),
			stamp:  time.Date(2026, 11, 23, 18, 4, 5, 0, time.UTC),
			status: ical.EventConfirmed, sequence: 6,
			attendees: []attendee{{"long@example.org", apps[2].Attendees[0].Name}},
		},
	}

	events := cal.Events()
	if len(events) != len(wants) {
		t.Fatalf("%d events, want %d", len(events), len(wants))
	}
	for i, want := range wants {
		ev := events[i]
		t.Run(want.uid, func(t *testing.T) {
			if got := propText(t, ev.Props, ical.PropUID); got != want.uid {
				t.Errorf("UID = %q, want %q", got, want.uid)
			}
			if got := propText(t, ev.Props, ical.PropSummary); got != want.summary {
				t.Errorf("SUMMARY = %q, want %q", got, want.summary)
			}
			if want.location == "" {
				if p := ev.Props.Get(ical.PropLocation); p != nil {
					t.Errorf("LOCATION = %q, want none", p.Value)
				}
			} else if got := propText(t, ev.Props, ical.PropLocation); got != want.location {
				t.Errorf("LOCATION = %q, want %q", got, want.location)
			}
			if p := ev.Props.Get(ical.PropURL); p == nil || p.Value != want.url {
				t.Errorf("URL = %v, want %q", p, want.url)
			}
			for _, tc := range []struct {
				name string
				want time.Time
			}{
				{ical.PropDateTimeStart, want.start},
				{ical.PropDateTimeEnd, want.end},
				{ical.PropDateTimeStamp, want.stamp},
				{ical.PropLastModified, want.stamp},
				{ical.PropCreated, time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)},
			} {
				p := ev.Props.Get(tc.name)
				if p == nil {
					t.Errorf("no %s", tc.name)
					continue
				}
				if !strings.HasSuffix(p.Value, "Z") || len(p.Params) != 0 {
					t.Errorf("%s = %q with params %v, want a UTC time and no TZID", tc.name, p.Value, p.Params)
				}
				got, err := p.DateTime(nil)
				if err != nil || !got.Equal(tc.want) {
					t.Errorf("%s = %v (%v), want %v", tc.name, got, err, tc.want)
				}
			}
			if got, err := ev.Status(); err != nil || got != want.status {
				t.Errorf("STATUS = %q (%v), want %q", got, err, want.status)
			}
			if p := ev.Props.Get(ical.PropSequence); p == nil {
				t.Errorf("no SEQUENCE")
			} else if got, err := p.Int(); err != nil || got != want.sequence {
				t.Errorf("SEQUENCE = %d (%v), want %d", got, err, want.sequence)
			}

			var got []attendee
			for _, p := range ev.Props.Values(ical.PropAttendee) {
				addr, ok := strings.CutPrefix(p.Value, "mailto:")
				if !ok {
					t.Errorf("ATTENDEE = %q, want a mailto URI", p.Value)
				}
				email, err := url.PathUnescape(addr)
				if err != nil {
					t.Errorf("ATTENDEE %q: %v", p.Value, err)
				}
				got = append(got, attendee{email, p.Params.Get(ical.ParamCommonName)})
			}
			if len(got) != len(want.attendees) {
				t.Fatalf("attendees = %q, want %q", got, want.attendees)
			}
			for j := range got {
				if got[j] != want.attendees[j] {
					t.Errorf("attendee %d = %q, want %q", j, got[j], want.attendees[j])
				}
			}
		})
	}
}

func TestWriteICalDeterministic(t *testing.T) {
	t.Parallel()
	apps := icalFixture()
	first := writeICal(t, icalTestOptions(), apps)
	second := writeICal(t, icalTestOptions(), apps)
	if !bytes.Equal(first, second) {
		t.Errorf("two writes differ:\n%s\n----\n%s", first, second)
	}
}

func TestWriteICalLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		apps       []Appointment
		wantFolded bool
	}{
		{"hostile", icalFixture(), true},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := writeICal(t, icalTestOptions(), tt.apps)
			if !utf8.Valid(doc) {
				t.Errorf("output is not valid UTF-8")
			}
			if !bytes.HasSuffix(doc, []byte("\r\n")) {
				t.Errorf("output does not end with CRLF")
			}
			lines := strings.Split(strings.TrimSuffix(string(doc), "\r\n"), "\r\n")
			folded := false
			for i, line := range lines {
				if len(line) > icalMaxLine {
					t.Errorf("line %d is %d octets, want at most %d: %q", i+1, len(line), icalMaxLine, line)
				}
				if strings.ContainsAny(line, "\r\n") {
					t.Errorf("line %d holds a bare CR or LF: %q", i+1, line)
				}
				if !utf8.ValidString(line) {
					t.Errorf("line %d splits a UTF-8 sequence: %q", i+1, line)
				}
				if strings.HasPrefix(line, " ") {
					folded = true
				}
			}
			if folded != tt.wantFolded {
				t.Errorf("folded = %v, want %v", folded, tt.wantFolded)
			}
		})
	}
}

func TestWriteICalEmpty(t *testing.T) {
	t.Parallel()
	doc := writeICal(t, ICalOptions{Name: "syndic calendar"}, nil)
	want := "BEGIN:VCALENDAR\r\n" +
		"CALSCALE:GREGORIAN\r\n" +
		"METHOD:PUBLISH\r\n" +
		"NAME:syndic calendar\r\n" +
		"PRODID:-//syndic//calendar//EN\r\n" +
		"VERSION:2.0\r\n" +
		"X-WR-CALNAME:syndic calendar\r\n" +
		"END:VCALENDAR\r\n"
	if string(doc) != want {
		t.Errorf("empty calendar =\n%s\nwant\n%s", doc, want)
	}
	cal := decodeICal(t, doc)
	if n := len(cal.Children); n != 0 {
		t.Errorf("%d components, want 0", n)
	}
	if got := propText(t, cal.Props, ical.PropProductID); got != icalProductID {
		t.Errorf("PRODID = %q, want %q", got, icalProductID)
	}
}

func TestAppointmentEventICalDefaults(t *testing.T) {
	t.Parallel()
	a := Appointment{ID: 5, Title: "t", StartsAt: "2026-12-01T09:30:00+01:00", EndsAt: "2026-12-01T10:00:00+01:00",
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	ev := AppointmentEvent(ICalOptions{}, a)
	if got := propText(t, ev.Props, ical.PropUID); got != "appointment-5@syndic-calendar" {
		t.Errorf("UID = %q, want the default host", got)
	}
	if p := ev.Props.Get(ical.PropURL); p != nil {
		t.Errorf("URL = %q without a BaseURL, want none", p.Value)
	}
	// Version 0 (never stored) still gives SEQUENCE 0; no UpdatedAt: CreatedAt stamps it.
	if p := ev.Props.Get(ical.PropSequence); p == nil || p.Value != "0" {
		t.Errorf("SEQUENCE = %v, want 0", p)
	}
	if p := ev.Props.Get(ical.PropDateTimeStamp); p == nil || p.Value != "20260102T030405Z" {
		t.Errorf("DTSTAMP = %v, want 20260102T030405Z", p)
	}
	if got, _ := ev.Status(); got != ical.EventConfirmed {
		t.Errorf("STATUS = %q, want CONFIRMED", got)
	}
}

// TestUIDHostDefault: without a BASE_URL the service's UIDs and those of an
// ICalOptions without Host end in the same host, the one subscribers'
// calendars already hold ("syndic-calendar"); with one, its host name.
func TestUIDHostDefault(t *testing.T) {
	const want = "syndic-calendar"
	for baseURL, host := range map[string]string{
		"":                                want,
		"not a URL":                       want,
		"https://cal.example.org:8443/x/": "cal.example.org",
	} {
		if got := uidHost(baseURL); got != host {
			t.Errorf("uidHost(%q) = %q, want %q", baseURL, got, host)
		}
	}
	a := Appointment{ID: 7, Title: "t", StartsAt: "2026-12-01T09:30:00+01:00", EndsAt: "2026-12-01T10:00:00+01:00"}
	for name, opt := range map[string]ICalOptions{
		"no Host":           {},
		"Host from uidHost": {Host: uidHost("")},
	} {
		if got := propText(t, AppointmentEvent(opt, a).Props, ical.PropUID); got != "appointment-7@"+want {
			t.Errorf("%s: UID = %q, want appointment-7@%s", name, got, want)
		}
	}
}

func TestICalTextSanitized(t *testing.T) {
	t.Parallel()
	// Validation refuses these characters; data from elsewhere must still
	// give a document, not an encoder error or a broken line.
	a := Appointment{ID: 1, Title: "one\r\ntwo\rthree\x00\x7f\tend", Location: "bad \xff byte",
		StartsAt: "2026-12-01T09:30:00Z", EndsAt: "2026-12-01T10:00:00Z",
		Attendees: []Attendee{{Name: "line\r\nbreak\x01 \"q\"", Email: "x@example.org"}}}
	cal := decodeICal(t, writeICal(t, ICalOptions{}, []Appointment{a}))
	ev := cal.Events()[0]
	if got, want := propText(t, ev.Props, ical.PropSummary), "one\ntwo\nthree\tend"; got != want {
		t.Errorf("SUMMARY = %q, want %q", got, want)
	}
	if got, want := propText(t, ev.Props, ical.PropLocation), "bad \uFFFD byte"; got != want {
		t.Errorf("LOCATION = %q, want %q", got, want)
	}
	if got, want := ev.Props.Get(ical.PropAttendee).Params.Get(ical.ParamCommonName), "line break 'q'"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
}

func TestICalFold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		line string
	}{
		{"empty", ""},
		{"74 octets", strings.Repeat("a", 74)},
		{"75 octets", strings.Repeat("a", 75)},
		{"76 octets", strings.Repeat("a", 76)},
		{"2-octet rune across 75", strings.Repeat("a", 74) + "é" + strings.Repeat("b", 80)},
		{"3-octet rune across 75", strings.Repeat("a", 73) + "€€" + strings.Repeat("b", 80)},
		{"4-octet rune across 75", strings.Repeat("a", 72) + "🎉🎉" + strings.Repeat("b", 80)},
		{"4-octet rune across 149", strings.Repeat("a", 147) + "🎉" + strings.Repeat("b", 10)},
		{"only emoji", strings.Repeat("🎉", 100)},
		{"right to left", strings.Repeat("שלום ", 60)},
		{"not UTF-8", strings.Repeat("\x80", 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := string(foldICal([]byte("SUMMARY:" + tt.line + "\r\nEND:X\r\n")))
			if !strings.HasSuffix(doc, "\r\nEND:X\r\n") {
				t.Errorf("next line lost: %q", doc)
			}
			if got, want := strings.ReplaceAll(doc, "\r\n ", ""), "SUMMARY:"+tt.line+"\r\nEND:X\r\n"; got != want {
				t.Errorf("unfolded = %q, want %q", got, want)
			}
			for i, line := range strings.Split(strings.TrimSuffix(doc, "\r\n"), "\r\n") {
				if len(line) > icalMaxLine {
					t.Errorf("line %d is %d octets", i+1, len(line))
				}
				if utf8.ValidString(tt.line) && !utf8.ValidString(line) {
					t.Errorf("line %d splits a UTF-8 sequence: %q", i+1, line)
				}
			}
		})
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write(p []byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteICalErrors(t *testing.T) {
	t.Parallel()
	if err := WriteICal(failingWriter{}, icalTestOptions(), icalFixture()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("WriteICal to a failing writer = %v, want its error", err)
	}

	var b bytes.Buffer
	err := WriteICal(&b, ICalOptions{BaseURL: "https://x\r\n"}, icalFixture())
	if err == nil {
		t.Fatal("WriteICal with a line break in BaseURL succeeded, want an error")
	}
	if b.Len() != 0 {
		t.Errorf("a failed WriteICal wrote %d bytes, want none", b.Len())
	}
}

// TestICalInvitationParts: every event names its organizer (the invitations'
// sender), describes itself, and asks each attendee to answer, as mail
// clients expect of an invitation (RFC 5545, RFC 5546).
func TestICalInvitationParts(t *testing.T) {
	a := Appointment{ID: 9, Title: "Review", StartsAt: "2030-01-15T09:30:00Z", EndsAt: "2030-01-15T10:30:00Z", Location: "Room 1", Version: 1,
		Attendees: []Attendee{{ID: 7, Name: "Ada Lovelace", Email: "ada@example.org"}, {ID: 8, Name: "Gone", Email: "gone@example.org", Deleted: true}}}
	opt := ICalOptions{BaseURL: "https://calendar.example.org", Organizer: &mail.Address{Name: "Example Calendar", Address: "calendar@example.org"}}
	ev := AppointmentEvent(opt, a)
	org := ev.Props.Get(ical.PropOrganizer)
	if org == nil || org.Value != "mailto:calendar@example.org" || org.Params.Get(ical.ParamCommonName) != "Example Calendar" {
		t.Fatalf("ORGANIZER %+v", org)
	}
	att := ev.Props.Get(ical.PropAttendee)
	if att.Params.Get(ical.ParamRSVP) != "TRUE" || att.Params.Get(ical.ParamParticipationStatus) != "NEEDS-ACTION" || att.Params.Get(ical.ParamRole) != "REQ-PARTICIPANT" {
		t.Fatalf("ATTENDEE %+v", att)
	}
	if d, _ := ev.Props.Text(ical.PropDescription); d != "Review with Ada Lovelace, at Room 1.\nhttps://calendar.example.org/appointments/9" {
		t.Fatalf("DESCRIPTION %q", d)
	}
	// The mail's part: the organizer is the sender when known.
	m := Mailer{ICal: opt}
	if part := m.calendar(KindInvitation, a); !strings.Contains(part, "ORGANIZER;CN=Example Calendar:mailto:calendar@example.org") {
		t.Fatalf("invitation part:\n%s", part)
	}
}
