package calendar

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/view"
)

// htmlFields are the appointment form's fields as typed, kept to show them
// again beside their problems.
type htmlFields struct {
	Title, StartsAt, EndsAt, Timezone, Location string
	Participants                                []int64
}

// htmlOption is one participant checkbox.
type htmlOption struct {
	ID                        int64
	Name, Email               string
	Deleted, Unknown, Checked bool
}

// htmlForm is the data of the appointment form: a new appointment when
// Appointment.ID is 0, else an edit based on Appointment.Version.
type htmlForm struct {
	Appointment Appointment
	Fields      htmlFields
	Options     []htmlOption
	Problems    derrors.Problems
	Notice      string
	Find        string // the participant search typed
	More        bool   // more contacts match Find than are listed
}

// htmlFindLimit is how many contacts the participant search lists.
const htmlFindLimit = 50

// htmlFinding reports whether the form was posted with its Find button: it
// is shown again with the contacts that match, nothing saved.
func htmlFinding(r *http.Request) bool { return r.PostFormValue("action") == "find" }

// OtherProblems lists the problems with no place beside a field.
func (f htmlForm) OtherProblems() []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(f.Problems)) {
		switch k {
		case "title", "starts_at", "ends_at", "timezone", "location", "participants", "version":
		default:
			out = append(out, k+": "+f.Problems[k])
		}
	}
	return out
}

// htmlOptions lists the contacts to offer: those not deleted, and every one
// chosen or already on the appointment a, so that a participant deleted
// upstream (or unknown here) stays listed, and checked until unticked:
// saving does not drop them silently.
func htmlOptions(contacts []Contact, chosen []int64, a Appointment) []htmlOption {
	checked := make(map[int64]bool, len(chosen))
	for _, id := range chosen {
		checked[id] = true
	}
	listed := make(map[int64]bool, len(contacts))
	var opts []htmlOption
	for _, c := range contacts {
		listed[c.ID] = true
		if c.Deleted && !checked[c.ID] && !slices.Contains(a.Participants, c.ID) {
			continue
		}
		opts = append(opts, htmlOption{ID: c.ID, Name: c.Name, Email: c.Email, Deleted: c.Deleted, Checked: checked[c.ID]})
	}
	for _, id := range slices.Concat(chosen, a.Participants) {
		if listed[id] {
			continue
		}
		listed[id] = true
		o := htmlOption{ID: id, Unknown: true, Checked: checked[id]}
		for _, at := range a.Attendees {
			if at.ID == id {
				o.Name, o.Email, o.Deleted, o.Unknown = at.Name, at.Email, at.Deleted, !at.Deleted
			}
		}
		opts = append(opts, o)
	}
	return opts
}

// htmlFieldsOf fills the form from a stored appointment: local times in the
// start's offset, and that offset as a time zone the form reads back.
func htmlFieldsOf(a Appointment) htmlFields {
	loc := fixedZone(a.Start())
	return htmlFields{
		Title:        a.Title,
		StartsAt:     htmlLocalValue(a.Start().In(loc)),
		EndsAt:       htmlLocalValue(a.End().In(loc)),
		Timezone:     loc.String(),
		Location:     a.Location,
		Participants: a.Participants,
	}
}

// htmlReadForm reads the posted fields; a body over the limit is
// ErrTooLarge. Participant values that are not ids are problems.
func htmlReadForm(r *http.Request) (htmlFields, derrors.Problems, error) {
	if err := view.ParseForm(r); err != nil {
		return htmlFields{}, nil, err
	}
	f := htmlFields{
		Title:    r.PostFormValue("title"),
		StartsAt: strings.TrimSpace(r.PostFormValue("starts_at")),
		EndsAt:   strings.TrimSpace(r.PostFormValue("ends_at")),
		Timezone: strings.TrimSpace(r.PostFormValue("timezone")),
		Location: r.PostFormValue("location"),
	}
	p := derrors.Problems{}
	for _, v := range r.PostForm["participants"] {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 1 {
			p.Add("participants", fmt.Sprintf("%q is not a contact id", v))
			continue
		}
		f.Participants = append(f.Participants, id)
	}
	return f, p, nil
}

// htmlInput converts the fields into a normalized Input, adding to p the
// problems of the time zone, the local times and Input.Validate.
func htmlInput(f htmlFields, p derrors.Problems) Input {
	in := Input{Title: f.Title, Location: f.Location, Participants: f.Participants}
	loc, err := parseZone(f.Timezone)
	if err != nil {
		p.Add("timezone", err.Error())
		loc = time.UTC // still check the times' shape
	}
	if in.StartsAt, err = htmlRFC3339(f.StartsAt, loc); err != nil {
		p.Add("starts_at", err.Error())
	}
	if in.EndsAt, err = htmlRFC3339(f.EndsAt, loc); err != nil {
		p.Add("ends_at", err.Error())
	}
	in = in.Normalize()
	var more derrors.Problems
	if errors.As(in.Validate(), &more) {
		for k, why := range more {
			p.Add(k, why)
		}
	}
	return in
}

// htmlRFC3339 reads a datetime-local value (seconds optional; a space for
// the T is accepted for browsers that show a text box) in loc.
func htmlRFC3339(v string, loc *time.Location) (string, error) {
	if v == "" {
		return "", errors.New("is required")
	}
	v = strings.Replace(v, " ", "T", 1)
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t.Format(time.RFC3339), nil
		}
	}
	return "", errors.New("must be a date and time like 2026-12-01T09:30")
}

// htmlLocalValue is t as a datetime-local value, with seconds only when
// there are some.
func htmlLocalValue(t time.Time) string {
	if t.Second() != 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04")
}

// htmlVersion reads the posted version the change is based on.
func htmlVersion(r *http.Request) (int64, error) {
	version, err := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
	if err != nil || version < 1 {
		return 0, fmt.Errorf("the form lacks the version it was based on: reload the page: %w", derrors.ErrInvalid)
	}
	return version, nil
}
