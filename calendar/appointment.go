// Package calendar is the calendar service: appointments with participants
// picked from a local copy of the contacts, kept by following the contacts
// Atom feed, and iCal calendars for calendar apps to subscribe to.
package calendar

import (
	"fmt"
	"strings"
	"time"

	"syndic/shared/derrors"
)

// Appointment is a meeting with participants from the local contacts copy.
type Appointment struct {
	ID       int64  `json:"id"`
	Title    string `json:"title"`
	StartsAt string `json:"starts_at"` // RFC 3339, in the zone it was given in
	EndsAt   string `json:"ends_at"`
	Location string `json:"location"`
	// Participants are contact ids; Attendees the same people as known now.
	Participants []int64    `json:"participants"`
	Attendees    []Attendee `json:"attendees"`
	Status       string     `json:"status"` // StatusConfirmed or StatusCancelled
	Version      int64      `json:"version"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
}

// Appointment statuses.
const (
	StatusConfirmed = "confirmed"
	StatusCancelled = "cancelled"
)

// Attendee is a participant as the local copy knows them: a contact
// deleted upstream stays, marked deleted.
type Attendee struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Email   string `json:"email"`
	Deleted bool   `json:"deleted"`
}

// Start and End parse the stored times (they are always valid).
func (a Appointment) Start() time.Time { t, _ := time.Parse(time.RFC3339, a.StartsAt); return t }

// End is when the appointment ends.
func (a Appointment) End() time.Time { t, _ := time.Parse(time.RFC3339, a.EndsAt); return t }

// Input is what a client may set on an appointment.
type Input struct {
	Title        string  `json:"title"`
	StartsAt     string  `json:"starts_at"`
	EndsAt       string  `json:"ends_at"`
	Location     string  `json:"location"`
	Participants []int64 `json:"participants"`
}

// Limits on the fields.
const (
	MaxTitle        = 200
	MaxLocation     = 200
	MaxParticipants = 100
	// MaxDuration bounds how long one appointment lasts: longer is a typo
	// (a year for a day), not a meeting.
	MaxDuration = 31 * 24 * time.Hour
)

// Normalize trims text fields, drops duplicate participants and writes the
// times in canonical RFC 3339 (keeping their zone offset).
func (in Input) Normalize() Input {
	out := Input{Title: strings.TrimSpace(in.Title), Location: strings.TrimSpace(in.Location),
		StartsAt: strings.TrimSpace(in.StartsAt), EndsAt: strings.TrimSpace(in.EndsAt)}
	seen := map[int64]bool{}
	out.Participants = []int64{}
	for _, id := range in.Participants {
		if !seen[id] {
			seen[id] = true
			out.Participants = append(out.Participants, id)
		}
	}
	for _, f := range []*string{&out.StartsAt, &out.EndsAt} {
		if t, err := time.Parse(time.RFC3339, *f); err == nil {
			*f = t.Format(time.RFC3339)
		}
	}
	return out
}

// Validate checks the fields on their own (participants' existence is the
// store's to check) and returns derrors.Problems, or nil.
func (in Input) Validate() error {
	p := derrors.Problems{}
	p.Text("title", in.Title, true, MaxTitle)
	p.Text("location", in.Location, false, MaxLocation)
	start, serr := parseTime(in.StartsAt)
	end, eerr := parseTime(in.EndsAt)
	if serr != nil {
		p.Add("starts_at", serr.Error())
	}
	if eerr != nil {
		p.Add("ends_at", eerr.Error())
	}
	switch {
	case serr != nil || eerr != nil:
	case !end.After(start):
		p.Add("ends_at", "must be after the start")
	case end.Sub(start) > MaxDuration:
		p.Add("ends_at", fmt.Sprintf("must be at most %d days after the start, not %d", MaxDuration/(24*time.Hour), end.Sub(start)/(24*time.Hour)))
	}
	if len(in.Participants) > MaxParticipants {
		p.Add("participants", fmt.Sprintf("at most %d participants", MaxParticipants))
	}
	for _, id := range in.Participants {
		if id < 1 {
			p.Add("participants", fmt.Sprintf("%d is not a contact id", id))
		}
	}
	return p.Err()
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("is required (RFC 3339, like 2026-12-01T09:30:00+01:00)")
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time with a zone, like 2026-12-01T09:30:00+01:00", s)
	}
	if t.Year() < 1900 || t.Year() > 9999 {
		return time.Time{}, fmt.Errorf("year %d is out of range", t.Year())
	}
	return t, nil
}

// Contact is the local copy of a contact, kept from the contacts feed.
type Contact struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Phone     string    `json:"phone"`
	Version   int64     `json:"version"`
	Deleted   bool      `json:"deleted"`
	UpdatedAt time.Time `json:"updated_at"`
	Seq       int64     `json:"seq"` // the feed event it was last changed by
}
