package calendar

import (
	"bytes"
	"cmp"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-ical"
)

// Mailer words the notifications of an appointment change.
type Mailer struct {
	ICal ICalOptions // BaseURL for links, Host for UIDs
}

// entries returns the outbox entries for a change from before to after
// (before zero for a creation): invitations for people added, cancellations
// for people removed or a cancelled appointment, changes for the rest.
// People deleted upstream get nothing.
func (m Mailer) entries(before, after Appointment) []OutboxEntry {
	kindOf := map[int64]string{}
	var people []Attendee
	switch {
	case after.Status == StatusCancelled:
		for _, a := range after.Attendees {
			kindOf[a.ID] = KindCancellation
		}
		people = after.Attendees
	default:
		for _, a := range after.Attendees {
			kindOf[a.ID] = KindInvitation
			if before.ID != 0 && slices.Contains(before.Participants, a.ID) {
				kindOf[a.ID] = KindChange
			}
		}
		people = after.Attendees
		for _, a := range before.Attendees {
			if _, still := kindOf[a.ID]; !still {
				kindOf[a.ID] = KindCancellation
				people = append(people, a)
			}
		}
	}
	var out []OutboxEntry
	for _, p := range people {
		if p.Deleted || p.Email == "" {
			continue
		}
		kind := kindOf[p.ID]
		out = append(out, OutboxEntry{
			AppointmentID: after.ID, ContactID: p.ID, Kind: kind, To: p.Email,
			Subject:  m.subject(kind, after),
			Text:     m.text(kind, after, p, before),
			Calendar: m.calendar(kind, after),
			Key:      fmt.Sprintf("calendar-appointment-%d-v%d-contact-%d-%s", after.ID, after.Version, p.ID, kind),
		})
	}
	return out
}

// changes says what differs between two versions of an appointment, for
// people: "the time (was Mon 4 Jan 2027 10:00–11:00 …), the place".
func changes(before, after Appointment) string {
	var what []string
	if before.Title != after.Title {
		what = append(what, fmt.Sprintf("the title (was “%s”)", before.Title))
	}
	if !before.Start().Equal(after.Start()) || !before.End().Equal(after.End()) || before.TimeZone != after.TimeZone {
		what = append(what, "the time (was "+whenText(before)+")")
	}
	if before.Location != after.Location {
		if before.Location == "" {
			what = append(what, "the place (none before)")
		} else {
			what = append(what, fmt.Sprintf("the place (was %s)", before.Location))
		}
	}
	var added, removed []string
	for _, at := range after.Attendees {
		if !slices.Contains(before.Participants, at.ID) && !at.Deleted {
			added = append(added, at.Name)
		}
	}
	for _, at := range before.Attendees {
		if !slices.Contains(after.Participants, at.ID) && !at.Deleted {
			removed = append(removed, at.Name)
		}
	}
	if len(added) > 0 {
		what = append(what, "joining: "+strings.Join(added, ", "))
	}
	if len(removed) > 0 {
		what = append(what, "no longer taking part: "+strings.Join(removed, ", "))
	}
	if len(what) == 0 {
		return "details were updated"
	}
	return strings.Join(what, "; ")
}

// maxSubject is what notifications accepts as a subject.
const maxSubject = 200

func (m Mailer) subject(kind string, a Appointment) string {
	prefix := map[string]string{KindInvitation: "Invitation", KindChange: "Changed", KindCancellation: "Cancelled"}[kind] + ": "
	loc := a.Zone()
	when := " — " + a.Start().In(loc).Format("Mon 2 Jan 2006 15:04") + " (" + zoneLabel(a) + ")"
	title := []rune(a.Title)
	if room := maxSubject - utf8.RuneCountInString(prefix+when); len(title) > room {
		title = append(title[:room-1], '…')
	}
	return prefix + string(title) + when
}

func (m Mailer) text(kind string, a Appointment, to Attendee, before Appointment) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\n", to.Name)
	switch {
	case kind == KindInvitation:
		fmt.Fprintf(&b, "you are invited to “%s”.\n\n", a.Title)
	case kind == KindChange:
		fmt.Fprintf(&b, "“%s” has changed: %s. This is how it stands now:\n\n", a.Title, changes(before, a))
	case a.Status == StatusCancelled:
		fmt.Fprintf(&b, "“%s” is cancelled.\n\n", a.Title)
	default:
		fmt.Fprintf(&b, "you are no longer a participant of “%s”.\n\n", a.Title)
	}
	fmt.Fprintf(&b, "When:  %s\n", whenText(a)) // the end's day too when it is another
	if a.Location != "" {
		fmt.Fprintf(&b, "Where: %s\n", a.Location)
	}
	var names []string
	for _, p := range a.Attendees {
		if !p.Deleted {
			names = append(names, p.Name)
		}
	}
	if len(names) > 0 {
		fmt.Fprintf(&b, "With:  %s\n", strings.Join(names, ", "))
	}
	if m.ICal.BaseURL != "" {
		fmt.Fprintf(&b, "\nDetails: %s/appointments/%d\n", strings.TrimRight(m.ICal.BaseURL, "/"), a.ID)
	}
	b.WriteString("\n— syndic calendar\n")
	return b.String()
}

// calendar is the iCal part: METHOD:REQUEST for invitations and changes,
// METHOD:CANCEL for cancellations (RFC 5546).
func (m Mailer) calendar(kind string, a Appointment) string {
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropProductID, "-//syndic//calendar//EN")
	cal.Props.SetText(ical.PropVersion, "2.0")
	method := "REQUEST"
	if kind == KindCancellation {
		method = "CANCEL"
		a.Status = StatusCancelled
	}
	cal.Props.SetText(ical.PropMethod, method)
	opt := m.ICal
	if opt.Organizer == nil { // no MAIL_FROM known: still an organizer mail clients accept
		opt.Organizer = &mail.Address{Name: "syndic calendar", Address: "calendar@" + cmp.Or(m.ICal.Host, icalDefaultHost)}
	}
	ev := AppointmentEvent(opt, a)
	addTimezones(cal, a)
	cal.Children = append(cal.Children, ev.Component)
	var b bytes.Buffer
	if err := EncodeICal(&b, cal); err != nil {
		return "" // an appointment always encodes; the mail goes without the part otherwise
	}
	return b.String()
}
