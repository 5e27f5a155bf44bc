package calendar

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
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
func parsePages(log *slog.Logger, links view.Links) (pages, error) {
	zones := zoneNames()
	funcs := template.FuncMap{
		// contactPage is the contact's page in the contacts service, or ""
		// when its URL is not known.
		"contactPage": func(id int64) string {
			if links.Contacts == "" || links.Contacts == "/" {
				return ""
			}
			return fmt.Sprintf("%s/contacts/%d", links.Contacts, id)
		},
		"when":      whenText,
		"cancelled": func(a Appointment) bool { return a.Status == StatusCancelled },
		"stamp":     htmlStamp,
		"zones":     func() []string { return zones },
		"ago":       htmlAgo,
	}
	set, err := view.Parse(log, assets, "templates", links, funcs, "upcoming", "form", "appointment", "contacts", "contact")
	return pages{set}, err
}

const (
	htmlNoAppointment = "There is no such appointment."
	htmlNoContact     = "There is no such contact in the calendar's copy of the contacts: it may not have arrived from the contacts feed yet."
	htmlListLimit     = 50  // appointments shown on one page
	htmlContactsPage  = 100 // contacts shown on one page of /contacts
)

// handleUpcoming shows the appointments ending after now (cancelled ones
// too with ?cancelled=1).
func (ps pages) handleUpcoming(store Store) http.Handler {
	return ps.Handle(htmlNoAppointment, func(w http.ResponseWriter, r *http.Request) error {
		withCancelled := r.URL.Query().Get("cancelled") == "1"
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		offset = max(offset, 0)
		items, err := store.Appointments(r.Context(), AppointmentQuery{From: time.Now(), WithCancelled: withCancelled, Limit: htmlListLimit + 1, Offset: offset})
		if err != nil {
			return err
		}
		v := url.Values{}
		if withCancelled {
			v.Set("cancelled", "1")
		}
		more := len(items) > htmlListLimit
		prev, next := view.PageLinks("/", v, offset, htmlListLimit, more)
		if more {
			items = items[:htmlListLimit]
		}
		data := map[string]any{"Appointments": items, "WithCancelled": withCancelled, "Prev": prev, "Next": next}
		ps.Render(w, r, http.StatusOK, "upcoming", data)
		return nil
	})
}

// handleAppointment shows one appointment with its attendees.
func (ps pages) handleAppointment(store Store) http.Handler {
	return ps.Handle(htmlNoAppointment, func(w http.ResponseWriter, r *http.Request) error {
		a, err := htmlAppointment(r, store)
		if err != nil {
			return err
		}
		return ps.renderAppointment(w, r, store, http.StatusOK, a, doneNotice(r))
	})
}

// renderAppointment shows an appointment with its notification requests;
// an error reading them is returned before anything is written.
func (ps pages) renderAppointment(w http.ResponseWriter, r *http.Request, store Store, status int, a Appointment, notice string) error {
	ns, err := store.Notifications(r.Context(), a.ID)
	if err != nil {
		return err
	}
	ps.Render(w, r, status, "appointment", map[string]any{"Appointment": a, "Notice": notice, "Notifications": ns})
	return nil
}

// doneNotice is the message that says what a form just did, from the
// done parameter its redirect carries (one of a fixed few: a link can't
// make the page say anything else).
func doneNotice(r *http.Request) string {
	return view.Done(r, map[string]string{
		"created":   "Appointment booked: its participants are sent an invitation.",
		"saved":     "Changes saved: the participants are told what changed.",
		"cancelled": "Appointment cancelled: its participants are sent a cancellation.",
	})
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

// pathContact is the contact of the local copy that the {id} of the path
// names; a malformed id or an unknown contact is ErrNotFound.
func pathContact(r *http.Request, store Store) (Contact, error) {
	id, err := httpx.PathID(r, "contact")
	if err != nil {
		return Contact{}, err
	}
	return store.Contact(r.Context(), id)
}

func htmlAppointmentPath(id int64) string { return "/appointments/" + strconv.FormatInt(id, 10) }

// renderForm answers the form with the contacts to pick from; an error
// reading them is returned before anything is written.
// It lists the participants chosen, then the contacts that match the
// search typed (the first htmlFindLimit of all without one).
func (ps pages) renderForm(w http.ResponseWriter, r *http.Request, store Store, status int, form htmlForm) error {
	if r.Method == http.MethodPost {
		form.Find = strings.TrimSpace(r.PostFormValue("find"))
	}
	var contacts []Contact
	seen := map[int64]bool{}
	for _, id := range slices.Concat(form.Fields.Participants, form.Appointment.Participants) {
		c, err := store.Contact(r.Context(), id)
		if errors.Is(err, derrors.ErrNotFound) {
			continue // unknown here: htmlOptions lists it so
		}
		if err != nil {
			return err
		}
		if !seen[id] {
			seen[id] = true
			contacts = append(contacts, c)
		}
	}
	found, err := store.FindContacts(r.Context(), form.Find, htmlFindLimit+1, 0)
	if err != nil {
		return err
	}
	if len(found) > htmlFindLimit {
		found, form.More = found[:htmlFindLimit], true
	}
	for _, c := range found {
		if !seen[c.ID] {
			contacts = append(contacts, c)
		}
	}
	form.Options = htmlOptions(contacts, form.Fields.Participants, form.Appointment)
	ps.Render(w, r, status, "form", form)
	return nil
}

// handleNewAppointment shows an empty form.
func (ps pages) handleNewAppointment(store Store) http.Handler {
	return ps.Handle(htmlNoAppointment, func(w http.ResponseWriter, r *http.Request) error {
		return ps.renderForm(w, r, store, http.StatusOK, htmlForm{Fields: htmlFields{Timezone: "UTC"}})
	})
}

// handleEditAppointment shows the form filled from the appointment, in its
// own offset; a cancelled appointment cannot be edited.
func (ps pages) handleEditAppointment(store Store) http.Handler {
	return ps.Handle(htmlNoAppointment, func(w http.ResponseWriter, r *http.Request) error {
		a, err := htmlAppointment(r, store)
		if err != nil {
			return err
		}
		if a.Status == StatusCancelled {
			return ps.renderCancelled(w, r, store, a)
		}
		return ps.renderForm(w, r, store, http.StatusOK, htmlForm{Appointment: a, Fields: htmlFieldsOf(a)})
	})
}

// renderCancelled answers 409 with the appointment page of a cancelled one.
func (ps pages) renderCancelled(w http.ResponseWriter, r *http.Request, store Store, a Appointment) error {
	return ps.renderAppointment(w, r, store, http.StatusConflict, a, "This appointment was cancelled: it can no longer be changed. Create a new one instead.")
}

// whenText shows an appointment's time for people, in its own zone, on
// pages and in mails: "Tue 5 Jul 2027, 10:00–11:00 (Europe/Paris,
// UTC+02:00)", with a bare offset "Tue 1 Dec 2026, 09:30–10:30
// (UTC+01:00)", and across days "Fri 1 Jan 2027, 22:00 – Sat 2 Jan 2027,
// 02:00 (UTC+01:00)".
func whenText(a Appointment) string {
	loc := a.Zone()
	start, end := a.Start().In(loc), a.End().In(loc)
	const day, clock = "Mon 2 Jan 2006", "15:04"
	if start.Format(day) == end.Format(day) {
		return fmt.Sprintf("%s, %s–%s (%s)", start.Format(day), start.Format(clock), end.Format(clock), zoneLabel(a))
	}
	return fmt.Sprintf("%s, %s – %s, %s (%s)", start.Format(day), start.Format(clock), end.Format(day), end.Format(clock), zoneLabel(a))
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
	s := fmt.Sprintf("“%s”, %s", a.Title, whenText(a))
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

// handleCreateAppointment creates from the form and redirects to the new
// appointment; problems re-render the form (400) with the input kept.
func (ps pages) handleCreateAppointment(store Store) http.Handler {
	return ps.Handle(htmlNoAppointment, func(w http.ResponseWriter, r *http.Request) error {
		f, p, err := htmlReadForm(r)
		if err != nil {
			return err
		}
		form := htmlForm{Fields: f, Problems: p}
		if htmlFinding(r) {
			form.Problems = nil
			return ps.renderForm(w, r, store, http.StatusOK, form)
		}
		in := htmlInput(f, p)
		if len(p) > 0 {
			return ps.renderForm(w, r, store, http.StatusBadRequest, form)
		}
		a, err := store.Create(r.Context(), in)
		if errors.As(err, &form.Problems) {
			return ps.renderForm(w, r, store, http.StatusBadRequest, form)
		}
		if err != nil {
			return err
		}
		http.Redirect(w, r, htmlAppointmentPath(a.ID)+"?done=created", http.StatusSeeOther)
		return nil
	})
}

// handleUpdateAppointment saves the form over the version it was based on;
// a change made meanwhile re-renders it (409) with a notice and the input
// kept, ready to be saved over the new version.
func (ps pages) handleUpdateAppointment(store Store) http.Handler {
	return ps.Handle(htmlNoAppointment, func(w http.ResponseWriter, r *http.Request) error {
		current, err := htmlAppointment(r, store)
		if err != nil {
			return err
		}
		f, p, err := htmlReadForm(r)
		if err != nil {
			return err
		}
		if current.Status == StatusCancelled {
			return ps.renderCancelled(w, r, store, current)
		}
		form := htmlForm{Appointment: current, Fields: f, Problems: p}
		if htmlFinding(r) {
			form.Problems = nil
			return ps.renderForm(w, r, store, http.StatusOK, form)
		}
		version, err := htmlVersion(r)
		if err != nil {
			p.Add("version", "The form lacks the version it was based on: reload the page.")
			return ps.renderForm(w, r, store, http.StatusBadRequest, form)
		}
		form.Appointment.Version = version
		in := htmlInput(f, p)
		if len(p) > 0 {
			return ps.renderForm(w, r, store, http.StatusBadRequest, form)
		}
		a, err := store.Update(r.Context(), current.ID, version, in)
		var stale *StaleError
		switch {
		case errors.As(err, &stale) && stale.Current.Status == StatusCancelled:
			return ps.renderCancelled(w, r, store, stale.Current)
		case errors.As(err, &stale):
			form.Appointment = stale.Current
			form.Notice = fmt.Sprintf("Someone else changed this appointment while you were editing (it is now at version %d: %s). Your changes are below and were not saved; submit again to save them over theirs.", stale.Current.Version, htmlDescribe(stale.Current))
			return ps.renderForm(w, r, store, http.StatusConflict, form)
		case errors.As(err, &form.Problems):
			return ps.renderForm(w, r, store, http.StatusBadRequest, form)
		case err != nil:
			return err
		}
		http.Redirect(w, r, htmlAppointmentPath(a.ID)+"?done=saved", http.StatusSeeOther)
		return nil
	})
}

// handleCancelAppointment cancels the version shown and redirects to the
// appointment; a change made meanwhile shows it again (409) to look at.
func (ps pages) handleCancelAppointment(store Store) http.Handler {
	return ps.Handle(htmlNoAppointment, func(w http.ResponseWriter, r *http.Request) error {
		id, err := appointmentID(r)
		if err != nil {
			return err
		}
		if err := view.ParseForm(r); err != nil {
			return err
		}
		version, err := htmlVersion(r)
		if err != nil {
			return err
		}
		if !view.Confirmed(r) {
			a, err := store.Appointment(r.Context(), id)
			if err != nil {
				return err
			}
			if a.Status == StatusCancelled {
				return ps.renderCancelled(w, r, store, a)
			}
			who := fmt.Sprintf("its %d participants are", len(a.Attendees))
			if len(a.Attendees) == 1 {
				who = "its participant is"
			}
			ps.Render(w, r, http.StatusOK, "confirm", view.Confirmation{
				Title:   "Cancel “" + a.Title + "”?",
				Message: fmt.Sprintf("%s: %s sent a cancellation at once. A cancelled appointment stays on record but can't be changed again.", whenText(a), who),
				Action:  fmt.Sprintf("/appointments/%d/cancel", id),
				Fields:  map[string]string{"version": strconv.FormatInt(version, 10)},
				Submit:  "Cancel the appointment",
				Back:    htmlAppointmentPath(id),
			})
			return nil
		}
		_, err = store.Cancel(r.Context(), id, version)
		var stale *StaleError
		if errors.As(err, &stale) {
			notice := fmt.Sprintf("Not cancelled: someone else changed this appointment after you opened it (it is now %s). Look at it again before cancelling.", htmlDescribe(stale.Current))
			if stale.Current.Status == StatusCancelled {
				notice = "Someone else cancelled this appointment already."
			}
			return ps.renderAppointment(w, r, store, http.StatusConflict, stale.Current, notice)
		}
		if err != nil {
			return err
		}
		http.Redirect(w, r, htmlAppointmentPath(id)+"?done=cancelled", http.StatusSeeOther)
		return nil
	})
}

// handleContacts shows the local copy of the contacts and how the sync
// with the contacts feed is doing.
func (ps pages) handleContacts(store Store, sync func() feed.Status) http.Handler {
	return ps.Handle(htmlNoContact, func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		search := strings.TrimSpace(q.Get("q"))
		offset, _ := strconv.Atoi(q.Get("offset"))
		offset = max(offset, 0)
		contacts, err := store.FindContacts(r.Context(), search, htmlContactsPage+1, offset)
		if err != nil {
			return err
		}
		v := url.Values{}
		if search != "" {
			v.Set("q", search)
		}
		more := len(contacts) > htmlContactsPage
		prev, next := view.PageLinks("/contacts", v, offset, htmlContactsPage, more)
		if more {
			contacts = contacts[:htmlContactsPage]
		}
		data := map[string]any{"Contacts": contacts, "Search": search, "Prev": prev, "Next": next}
		if sync != nil {
			data["Sync"] = sync()
		}
		ps.Render(w, r, http.StatusOK, "contacts", data)
		return nil
	})
}

// handleContact shows one contact of the local copy with its upcoming
// appointments and its iCal feed.
func (ps pages) handleContact(store Store) http.Handler {
	return ps.Handle(htmlNoContact, func(w http.ResponseWriter, r *http.Request) error {
		c, err := pathContact(r, store)
		if err != nil {
			return err
		}
		items, err := store.Appointments(r.Context(), AppointmentQuery{From: time.Now(), Participant: c.ID, Limit: htmlListLimit + 1})
		if err != nil {
			return err
		}
		data := map[string]any{"Contact": c, "Appointments": items, "Limit": htmlListLimit}
		if len(items) > htmlListLimit {
			data["Appointments"], data["More"] = items[:htmlListLimit], true
		}
		ps.Render(w, r, http.StatusOK, "contact", data)
		return nil
	})
}
