package calendar

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/feed"
	"syndic/shared/httpx"
	"syndic/shared/view"
)

//go:embed templates static
var assets embed.FS

// pages renders the calendar's HTML pages.
type pages struct{ *view.Set }

// parsePages parses the page templates; an error means a broken template.
func parsePages(log *slog.Logger) (pages, error) {
	funcs := template.FuncMap{
		"when":      htmlWhen,
		"cancelled": func(a Appointment) bool { return a.Status == StatusCancelled },
		"stamp":     htmlStamp,
		"ago":       htmlAgo,
	}
	set, err := view.Parse(log, assets, "templates", funcs, "upcoming", "form", "appointment", "contacts", "contact")
	return pages{set}, err
}

const (
	htmlNoAppointment = "There is no such appointment."
	htmlNoContact     = "There is no such contact in the calendar's copy of the contacts: it may not have arrived from the contacts feed yet."
	htmlListLimit     = 200 // appointments shown on one page
)

// handleUpcoming shows the appointments ending after now (cancelled ones
// too with ?cancelled=1).
func (ps pages) handleUpcoming(store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		withCancelled := r.URL.Query().Get("cancelled") == "1"
		items, err := store.Appointments(r.Context(), AppointmentQuery{From: time.Now(), WithCancelled: withCancelled, Limit: htmlListLimit + 1})
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		data := map[string]any{"Appointments": items, "WithCancelled": withCancelled, "Limit": htmlListLimit}
		if len(items) > htmlListLimit {
			data["Appointments"], data["More"] = items[:htmlListLimit], true
		}
		ps.Render(w, r, http.StatusOK, "upcoming", data)
	})
}

// handleAppointment shows one appointment with its attendees.
func (ps pages) handleAppointment(store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := htmlAppointment(r, store)
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		ps.renderAppointment(w, r, store, http.StatusOK, a, "")
	})
}

// renderAppointment shows an appointment with its notification requests.
func (ps pages) renderAppointment(w http.ResponseWriter, r *http.Request, store Store, status int, a Appointment, notice string) {
	ns, err := store.Notifications(r.Context(), a.ID)
	if err != nil {
		ps.Error(w, r, err, htmlNoAppointment)
		return
	}
	ps.Render(w, r, status, "appointment", map[string]any{"Appointment": a, "Notice": notice, "Notifications": ns})
}

// appointmentID is the {id} of the path; a malformed one is ErrNotFound.
func appointmentID(r *http.Request) (int64, error) { return httpx.PathID(r, "appointment") }

func htmlAppointment(r *http.Request, store Store) (Appointment, error) {
	id, err := appointmentID(r)
	if err != nil {
		return Appointment{}, err
	}
	return store.Appointment(r.Context(), id)
}

func htmlAppointmentPath(id int64) string { return "/appointments/" + strconv.FormatInt(id, 10) }

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
}

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

// renderForm answers the form with the contacts to pick from.
func (ps pages) renderForm(w http.ResponseWriter, r *http.Request, store Store, status int, form htmlForm) {
	contacts, err := store.Contacts(r.Context())
	if err != nil {
		ps.Error(w, r, err, htmlNoAppointment)
		return
	}
	form.Options = htmlOptions(contacts, form.Fields.Participants, form.Appointment)
	ps.Render(w, r, status, "form", form)
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

// handleNewAppointment shows an empty form.
func (ps pages) handleNewAppointment(store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.renderForm(w, r, store, http.StatusOK, htmlForm{Fields: htmlFields{Timezone: "UTC"}})
	})
}

// handleEditAppointment shows the form filled from the appointment, in its
// own offset; a cancelled appointment cannot be edited.
func (ps pages) handleEditAppointment(store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := htmlAppointment(r, store)
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		if a.Status == StatusCancelled {
			ps.renderCancelled(w, r, store, a)
			return
		}
		ps.renderForm(w, r, store, http.StatusOK, htmlForm{Appointment: a, Fields: htmlFieldsOf(a)})
	})
}

// renderCancelled answers 409 with the appointment page of a cancelled one.
func (ps pages) renderCancelled(w http.ResponseWriter, r *http.Request, store Store, a Appointment) {
	ps.renderAppointment(w, r, store, http.StatusConflict, a, "This appointment was cancelled: it can no longer be changed. Create a new one instead.")
}

// htmlFieldsOf fills the form from a stored appointment: local times in the
// start's offset, and that offset as a time zone the form reads back.
func htmlFieldsOf(a Appointment) htmlFields {
	loc := htmlFixedZone(a.Start())
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
	if err := r.ParseForm(); err != nil {
		return htmlFields{}, nil, htmlFormError(err)
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

func htmlFormError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("form over %d bytes: %w", tooLarge.Limit, derrors.ErrTooLarge)
	}
	return fmt.Errorf("form: %v: %w", err, derrors.ErrInvalid)
}

// htmlInput converts the fields into a normalized Input, adding to p the
// problems of the time zone, the local times and Input.Validate.
func htmlInput(f htmlFields, p derrors.Problems) Input {
	in := Input{Title: f.Title, Location: f.Location, Participants: f.Participants}
	loc, err := htmlLocation(f.Timezone)
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

// htmlLocation reads the time zone field: an IANA name such as
// Europe/Paris, or a fixed offset written UTC+01:00 or UTC-05:30 (what the
// edit form shows, since only the offset is stored). Empty is UTC.
func htmlLocation(name string) (*time.Location, error) {
	bad := errors.New("is unknown: use an IANA name such as Europe/Paris, or an offset such as UTC+01:00")
	switch {
	case name == "" || strings.EqualFold(name, "UTC"):
		return time.UTC, nil
	case len(name) > 3 && strings.EqualFold(name[:3], "UTC") && (name[3] == '+' || name[3] == '-'):
		return htmlOffsetZone(name[3:])
	case name == "Local": // the server's zone: meaningless to the person typing
		return nil, bad
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, bad
	}
	return loc, nil
}

// htmlOffsetZone reads a sign and hours with optional minutes ("+1",
// "+01", "+01:00", "-0530") as a fixed zone.
func htmlOffsetZone(s string) (*time.Location, error) {
	bad := errors.New("has an offset that is not ±hh:mm, like UTC+01:00 or UTC-05:30")
	sign, hh, mm := s[0], s[1:], "00"
	if h, m, ok := strings.Cut(hh, ":"); ok {
		hh, mm = h, m
	} else if len(hh) == 4 {
		hh, mm = hh[:2], hh[2:]
	}
	if len(hh) < 1 || len(hh) > 2 || len(mm) != 2 || strings.Trim(hh+mm, "0123456789") != "" {
		return nil, bad
	}
	h, _ := strconv.Atoi(hh)
	m, _ := strconv.Atoi(mm)
	if h > 23 || m > 59 {
		return nil, bad
	}
	offset := (h*60 + m) * 60
	if sign == '-' {
		offset = -offset
	}
	return time.FixedZone(htmlOffsetName(offset), offset), nil
}

// htmlOffsetName writes an offset in seconds as "UTC", "UTC+01:00" or
// "UTC-05:30".
func htmlOffsetName(offset int) string {
	if offset == 0 {
		return "UTC"
	}
	sign := '+'
	if offset < 0 {
		sign, offset = '-', -offset
	}
	return fmt.Sprintf("UTC%c%02d:%02d", sign, offset/3600, offset/60%60)
}

// htmlFixedZone is t's offset as a fixed zone named by htmlOffsetName. (A
// parsed time may carry the server's Local zone when the offset matched it,
// which would shift other times across a DST change.)
func htmlFixedZone(t time.Time) *time.Location {
	_, offset := t.Zone()
	return time.FixedZone(htmlOffsetName(offset), offset)
}

// htmlLocalValue is t as a datetime-local value, with seconds only when
// there are some.
func htmlLocalValue(t time.Time) string {
	if t.Second() != 0 {
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04")
}

// htmlWhen shows an appointment's time for people, in its own offset:
// "Tue 1 Dec 2026, 09:30–10:30 (UTC+01:00)".
func htmlWhen(a Appointment) string {
	loc := htmlFixedZone(a.Start())
	start, end := a.Start().In(loc), a.End().In(loc)
	const day, clock = "Mon 2 Jan 2006", "15:04"
	if start.Format(day) == end.Format(day) {
		return fmt.Sprintf("%s, %s–%s (%s)", start.Format(day), start.Format(clock), end.Format(clock), loc)
	}
	return fmt.Sprintf("%s, %s – %s, %s (%s)", start.Format(day), start.Format(clock), end.Format(day), end.Format(clock), loc)
}

// htmlStamp shows an instant in UTC, or "never" for the zero time.
func htmlStamp(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2 Jan 2006 15:04:05 UTC")
}

// htmlAgo says how long ago t was, to the second.
func htmlAgo(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

// htmlDescribe sums an appointment up for a notice.
func htmlDescribe(a Appointment) string {
	s := fmt.Sprintf("“%s”, %s", a.Title, htmlWhen(a))
	if a.Location != "" {
		s += ", at " + a.Location
	}
	names := make([]string, 0, len(a.Attendees))
	for _, at := range a.Attendees {
		names = append(names, at.Name)
	}
	if len(names) > 0 {
		s += ", with " + strings.Join(names, ", ")
	}
	return s
}

// htmlVersion reads the posted version the change is based on.
func htmlVersion(r *http.Request) (int64, error) {
	version, err := strconv.ParseInt(r.PostFormValue("version"), 10, 64)
	if err != nil || version < 1 {
		return 0, fmt.Errorf("the form lacks the version it was based on: reload the page: %w", derrors.ErrInvalid)
	}
	return version, nil
}

// handleCreateAppointment creates from the form and redirects to the new
// appointment; problems re-render the form (400) with the input kept.
func (ps pages) handleCreateAppointment(store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, p, err := htmlReadForm(r)
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		form := htmlForm{Fields: f, Problems: p}
		in := htmlInput(f, p)
		if len(p) > 0 {
			ps.renderForm(w, r, store, http.StatusBadRequest, form)
			return
		}
		a, err := store.Create(r.Context(), in)
		if errors.As(err, &form.Problems) {
			ps.renderForm(w, r, store, http.StatusBadRequest, form)
			return
		}
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		http.Redirect(w, r, htmlAppointmentPath(a.ID), http.StatusSeeOther)
	})
}

// handleUpdateAppointment saves the form over the version it was based on;
// a change made meanwhile re-renders it (409) with a notice and the input
// kept, ready to be saved over the new version.
func (ps pages) handleUpdateAppointment(store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current, err := htmlAppointment(r, store)
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		f, p, err := htmlReadForm(r)
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		if current.Status == StatusCancelled {
			ps.renderCancelled(w, r, store, current)
			return
		}
		form := htmlForm{Appointment: current, Fields: f, Problems: p}
		version, err := htmlVersion(r)
		if err != nil {
			p.Add("version", "The form lacks the version it was based on: reload the page.")
			ps.renderForm(w, r, store, http.StatusBadRequest, form)
			return
		}
		form.Appointment.Version = version
		in := htmlInput(f, p)
		if len(p) > 0 {
			ps.renderForm(w, r, store, http.StatusBadRequest, form)
			return
		}
		a, err := store.Update(r.Context(), current.ID, version, in)
		var stale *StaleError
		switch {
		case errors.As(err, &stale) && stale.Current.Status == StatusCancelled:
			ps.renderCancelled(w, r, store, stale.Current)
		case errors.As(err, &stale):
			form.Appointment = stale.Current
			form.Notice = fmt.Sprintf("Someone else changed this appointment while you were editing (it is now at version %d: %s). Your changes are below and were not saved; submit again to save them over theirs.", stale.Current.Version, htmlDescribe(stale.Current))
			ps.renderForm(w, r, store, http.StatusConflict, form)
		case errors.As(err, &form.Problems):
			ps.renderForm(w, r, store, http.StatusBadRequest, form)
		case err != nil:
			ps.Error(w, r, err, htmlNoAppointment)
		default:
			http.Redirect(w, r, htmlAppointmentPath(a.ID), http.StatusSeeOther)
		}
	})
}

// handleCancelAppointment cancels the version shown and redirects to the
// appointment; a change made meanwhile shows it again (409) to look at.
func (ps pages) handleCancelAppointment(store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := appointmentID(r)
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		if err := r.ParseForm(); err != nil {
			ps.Error(w, r, htmlFormError(err), htmlNoAppointment)
			return
		}
		version, err := htmlVersion(r)
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		_, err = store.Cancel(r.Context(), id, version)
		var stale *StaleError
		if errors.As(err, &stale) {
			notice := fmt.Sprintf("Not cancelled: someone else changed this appointment after you opened it (it is now %s). Look at it again before cancelling.", htmlDescribe(stale.Current))
			if stale.Current.Status == StatusCancelled {
				notice = "Someone else cancelled this appointment already."
			}
			ps.renderAppointment(w, r, store, http.StatusConflict, stale.Current, notice)
			return
		}
		if err != nil {
			ps.Error(w, r, err, htmlNoAppointment)
			return
		}
		http.Redirect(w, r, htmlAppointmentPath(id), http.StatusSeeOther)
	})
}

// handleContacts shows the local copy of the contacts and how the sync
// with the contacts feed is doing.
func (ps pages) handleContacts(store Store, sync func() feed.Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		contacts, err := store.Contacts(r.Context())
		if err != nil {
			ps.Error(w, r, err, htmlNoContact)
			return
		}
		data := map[string]any{"Contacts": contacts}
		if sync != nil {
			data["Sync"] = sync()
		}
		ps.Render(w, r, http.StatusOK, "contacts", data)
	})
}

// handleContact shows one contact of the local copy with its upcoming
// appointments and its iCal feed.
func (ps pages) handleContact(store Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := httpx.PathID(r, "contact")
		if err != nil {
			ps.Error(w, r, err, htmlNoContact)
			return
		}
		c, err := store.Contact(r.Context(), id)
		if err != nil {
			ps.Error(w, r, err, htmlNoContact)
			return
		}
		items, err := store.Appointments(r.Context(), AppointmentQuery{From: time.Now(), Participant: id, Limit: htmlListLimit + 1})
		if err != nil {
			ps.Error(w, r, err, htmlNoContact)
			return
		}
		data := map[string]any{"Contact": c, "Appointments": items, "Limit": htmlListLimit}
		if len(items) > htmlListLimit {
			data["Appointments"], data["More"] = items[:htmlListLimit], true
		}
		ps.Render(w, r, http.StatusOK, "contact", data)
	})
}
