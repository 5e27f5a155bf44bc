package calendar

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
)

// TestTimeZoneKeptAcrossSummerTime: an appointment booked in Europe/Paris
// in January and moved to July without touching its zone is at 10:00 Paris
// time in July — in the API, the pages, the edit form, iCal and the mail.
func TestTimeZoneKeptAcrossSummerTime(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{})
	s.seed(t, feedContact{ID: 7, Name: "Ada", Email: "ada@example.org"})

	// The API: local times with the zone, or instants, both kept in it.
	status, data, _ := do(t, "POST", s.URL+"/api/appointments", map[string]any{"title": "Review", "time_zone": "Europe/Paris",
		"starts_at": "2027-01-04T10:00:00", "ends_at": "2027-01-04T10:00:00Z", "participants": []int64{7}})
	var a Appointment
	json.Unmarshal(data, &a)
	if status != 201 || a.TimeZone != "Europe/Paris" || a.StartsAt != "2027-01-04T10:00:00+01:00" || a.EndsAt != "2027-01-04T11:00:00+01:00" {
		t.Fatalf("create: %d %s", status, data)
	}
	january := a
	if status, data, _ = do(t, "POST", s.URL+"/api/appointments", map[string]any{"title": "x", "time_zone": "Mars/Olympus",
		"starts_at": "2027-01-04T10:00:00Z", "ends_at": "2027-01-04T11:00:00Z"}); status != 400 || !strings.Contains(string(data), `"time_zone"`) {
		t.Fatalf("unknown zone: %d %s", status, data)
	}

	// The edit form preselects the zone; moving to July in it is 10:00 there.
	path := fmt.Sprintf("/appointments/%d", a.ID)
	_, form := get(t, s.URL+path+"/edit")
	if !strings.Contains(form, `name="timezone" value="Europe/Paris"`) && !strings.Contains(form, `value="Europe/Paris"`) {
		t.Fatalf("edit form doesn't preselect Europe/Paris:\n%s", form)
	}
	if !strings.Contains(form, `<option value="Pacific/Auckland">`) || !strings.Contains(form, `<option value="America/Argentina/Buenos_Aires">`) {
		t.Fatal("the form offers no list of IANA zones to pick from")
	}
	move := url.Values{"title": {"Review"}, "starts_at": {"2027-07-05T10:00"}, "ends_at": {"2027-07-05T11:00"}, "timezone": {"Europe/Paris"}, "participants": {"7"}, "version": {"1"}}
	status, _, page := post(t, s.URL, path, move)
	if status != 200 || !strings.Contains(page, "10:00–11:00 (Europe/Paris, UTC&#43;02:00)") {
		t.Fatalf("after the move: %d\n%s", status, page)
	}
	_, data, _ = do(t, "GET", s.URL+"/api"+path, nil)
	json.Unmarshal(data, &a)
	if a.StartsAt != "2027-07-05T10:00:00+02:00" || a.TimeZone != "Europe/Paris" {
		t.Fatalf("after the move the API says %s (%s)", a.StartsAt, a.TimeZone)
	}
	if _, form = get(t, s.URL+path+"/edit"); !strings.Contains(form, `value="2027-07-05T10:00"`) {
		t.Fatalf("edit form after the move lacks the local time 10:00:\n%s", form)
	}

	// iCal: TZID and local time, with the zone's VTIMEZONE; parsed back it
	// is the same instant.
	_, body, _ := do(t, "GET", s.URL+"/calendar.ics", nil)
	cal, err := ical.NewDecoder(strings.NewReader(string(body))).Decode()
	if err != nil {
		t.Fatal(err)
	}
	ev := cal.Events()[0]
	dt := ev.Props.Get(ical.PropDateTimeStart)
	if dt.Params.Get(ical.PropTimezoneID) != "Europe/Paris" || dt.Value != "20270705T100000" {
		t.Fatalf("DTSTART %+v, want TZID=Europe/Paris:20270705T100000", dt)
	}
	if start, err := ev.DateTimeStart(nil); err != nil || !start.Equal(time.Date(2027, 7, 5, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("DTSTART parsed back = %v, %v; want 08:00 UTC", start, err)
	}
	var tzs []*ical.Component
	for _, c := range cal.Children {
		if c.Name == ical.CompTimezone {
			tzs = append(tzs, c)
		}
	}
	if len(tzs) != 1 || tzs[0].Props.Get(ical.PropTimezoneID).Value != "Europe/Paris" || !strings.Contains(string(body), "TZOFFSETTO:+0200") {
		t.Fatalf("VTIMEZONE: %d of them\n%s", len(tzs), body)
	}

	// The change mail says 10:00 Paris time, and what changed.
	text := testMailer.text(KindChange, a, Attendee{Name: "Ada"}, january)
	if !strings.Contains(text, "When:  Mon 5 Jul 2027, 10:00–11:00 (Europe/Paris, UTC+02:00)") ||
		!strings.Contains(text, "“Review” has changed: the time (was Mon 4 Jan 2027, 10:00–11:00 (Europe/Paris, UTC+01:00)).") {
		t.Fatalf("change mail:\n%s", text)
	}
	if sub := testMailer.subject(KindChange, a); !strings.HasSuffix(sub, "Mon 5 Jul 2027 10:00 (Europe/Paris, UTC+02:00)") {
		t.Fatalf("change subject %q", sub)
	}
	if part := testMailer.calendar(KindChange, a); !strings.Contains(part, "BEGIN:VTIMEZONE") || !strings.Contains(part, "DTSTART;TZID=Europe/Paris:20270705T100000") {
		t.Fatalf("the mail's iCal part:\n%s", part)
	}
}

// TestVTimezone: the observances cover the times, each DTSTART the local
// time of its change in the offset before it.
func TestVTimezone(t *testing.T) {
	loc, _ := time.LoadLocation("Europe/Paris")
	tz := vtimezone(loc, time.Date(2027, 1, 4, 9, 0, 0, 0, time.UTC), time.Date(2027, 11, 1, 9, 0, 0, 0, time.UTC))
	var got []string
	for _, ob := range tz.Children {
		got = append(got, ob.Name+" "+ob.Props.Get(ical.PropDateTimeStart).Value+" "+ob.Props.Get(ical.PropTimezoneOffsetFrom).Value+">"+ob.Props.Get(ical.PropTimezoneOffsetTo).Value)
	}
	want := "[STANDARD 20261025T030000 +0200>+0100 DAYLIGHT 20270328T020000 +0100>+0200 STANDARD 20271031T030000 +0200>+0100]"
	if fmt.Sprint(got) != want {
		t.Fatalf("observances %v\nwant        %s", got, want)
	}
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	if tz := vtimezone(tokyo, time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 4, 0, 0, 0, 0, time.UTC)); len(tz.Children) != 1 ||
		tz.Children[0].Props.Get(ical.PropTimezoneOffsetTo).Value != "+0900" {
		t.Fatalf("Tokyo: %+v", tz.Children)
	}
}

// TestZoneNames: every zone the form offers loads.
func TestZoneNames(t *testing.T) {
	names := zoneNames()
	if len(names) < 300 || names[0] != "UTC" {
		t.Fatalf("%d names, first %q", len(names), names[0])
	}
	for _, n := range names {
		if _, err := ianaZone(n); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}
