package calendar

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
)

// FuzzDecodeInput: any body either gets a clear client error or decodes to
// an appointment input whose times parse and end after they start.
func FuzzDecodeInput(f *testing.F) {
	f.Add([]byte(`{"title":"Review","starts_at":"2030-01-01T09:00:00+01:00","ends_at":"2030-01-01T10:00:00+01:00","participants":[7]}`))
	f.Add([]byte(`{"title":"x","starts_at":"2030-01-01T09:00:00","ends_at":"soon"}`))
	f.Add([]byte(`{"participants":[-1,0,1e30]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest("POST", "/api/appointments", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var in Input
		err := decodeInput(r, &in, &in)
		if err != nil {
			var p derrors.Problems
			if s := httpx.Status(err); s != 413 && (s != 400 || !errors.As(err, &p)) {
				t.Fatalf("error %v answers %d", err, s)
			}
			return
		}
		a := Appointment{StartsAt: in.StartsAt, EndsAt: in.EndsAt}
		if !a.End().After(a.Start()) || derrors.BadText(in.Title) != "" || in.Title == "" {
			t.Fatalf("accepted %+v", in)
		}
	})
}

// FuzzICal: any appointment validation accepts comes back from the iCal
// output with its title, location, times and attendees, in lines of at
// most 75 octets.
func FuzzICal(f *testing.F) {
	f.Add("Lunch, \"quoted\"; <b>&</b> \\ 🎉", "Room 1; floor 2, \\ east", "Ada \"Countess\" Lovelace", "ada@example.org", int64(1900000000), uint16(90))
	f.Add(strings.Repeat("é", 200), "", "שלום", "a+b@example.org", int64(0), uint16(1))
	f.Fuzz(func(t *testing.T, title, location, name, email string, start int64, minutes uint16) {
		in := Input{Title: title, Location: location,
			StartsAt: time.Unix(start%4e9, 0).UTC().Format(time.RFC3339),
			EndsAt:   time.Unix(start%4e9, 0).UTC().Add(time.Duration(minutes) * time.Minute).Format(time.RFC3339)}.Normalize()
		if in.Validate() != nil || derrors.BadText(name) != "" || strings.TrimSpace(name) == "" || !strings.Contains(email, "@") || derrors.BadText(email) != "" {
			t.Skip()
		}
		a := Appointment{ID: 42, Title: in.Title, Location: in.Location, StartsAt: in.StartsAt, EndsAt: in.EndsAt, Status: StatusConfirmed, Version: 3,
			Attendees: []Attendee{{ID: 7, Name: name, Email: email}}, UpdatedAt: time.Unix(1, 0)}
		var b bytes.Buffer
		if err := WriteICal(&b, ICalOptions{Name: "n", BaseURL: "https://cal.example", Host: "cal.example"}, []Appointment{a}); err != nil {
			t.Fatalf("write: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\r\n"), "\r\n") {
			if len(line) > 75 {
				t.Fatalf("line of %d octets: %q", len(line), line)
			}
		}
		cal, err := ical.NewDecoder(&b).Decode()
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		ev := cal.Events()[0]
		if got, _ := ev.Props.Text(ical.PropSummary); got != a.Title {
			t.Fatalf("summary %q came back as %q", a.Title, got)
		}
		if got, _ := ev.Props.Text(ical.PropLocation); got != a.Location {
			t.Fatalf("location %q came back as %q", a.Location, got)
		}
		if got, err := ev.DateTimeStart(time.UTC); err != nil || !got.Equal(a.Start()) {
			t.Fatalf("start %v came back as %v (%v)", a.Start(), got, err)
		}
		if att := ev.Props.Get(ical.PropAttendee); att == nil || att.Params.Get(ical.ParamCommonName) != strings.ReplaceAll(name, `"`, "'") {
			t.Fatalf("attendee %q came back as %+v", name, att)
		}
	})
}
