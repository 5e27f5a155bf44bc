package calendar

import (
	"bytes"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-ical"
)

// ICalOptions describe one calendar document.
type ICalOptions struct {
	// Name is the calendar's display name, written as X-WR-CALNAME (what
	// calendar apps read) and as RFC 7986 NAME, like "syndic calendar" or
	// "Ada Lovelace's appointments". Empty leaves both out.
	Name string
	// BaseURL is the public base URL: each event's URL is
	// BaseURL + "/appointments/{id}". Empty leaves URL out.
	BaseURL string
	// Host is the domain part of every UID, like "calendar.example.org" for
	// "appointment-42@calendar.example.org". It must not change between
	// requests (calendar apps would show every appointment twice); empty
	// means icalDefaultHost.
	Host string
	// Organizer, when set, is the ORGANIZER of every event: the sender the
	// invitations come from (MAIL_FROM), so a mail client's reply reaches it.
	Organizer *mail.Address
}

const (
	icalProductID = "-//syndic//calendar//EN"
	// icalDefaultHost is the UID host without a BASE_URL (uidHost) or an
	// ICalOptions.Host. Subscribers' calendars key events by UID: changing
	// it would show every appointment twice.
	icalDefaultHost = "syndic-calendar"
	icalCalName     = "X-WR-CALNAME"
	// icalMaxLine is the longest content line RFC 5545 section 3.1 allows,
	// in octets, without the CRLF.
	icalMaxLine = 75
	// icalPlaceholder names a component lent to go-ical's encoder, which
	// refuses a VCALENDAR without components, and cut from its output.
	icalPlaceholder = "X-SYNDIC-EMPTY"
)

// WriteICal writes apps, in their order, as one RFC 5545 VCALENDAR (PRODID
// "-//syndic//calendar//EN", VERSION 2.0, CALSCALE GREGORIAN, METHOD PUBLISH)
// with one VEVENT per appointment as AppointmentEvent builds it. Cancelled
// appointments are kept, with STATUS:CANCELLED, so that subscribed calendar
// apps drop them. The output depends only on opt and apps, never on the time
// of the call: the same data gives the same bytes.
//
// Nothing is written to w unless the whole document encodes. WriteICal returns
// go-ical's error for a value RFC 5545 cannot hold (a line break in BaseURL,
// say), or the error of w.
func WriteICal(w io.Writer, opt ICalOptions, apps []Appointment) error {
	cal := ical.NewCalendar()
	setText(cal.Props, ical.PropProductID, icalProductID)
	setText(cal.Props, ical.PropVersion, "2.0")
	setText(cal.Props, ical.PropCalendarScale, "GREGORIAN")
	setText(cal.Props, ical.PropMethod, "PUBLISH")
	if opt.Name != "" {
		setText(cal.Props, ical.PropName, opt.Name)
		setText(cal.Props, icalCalName, opt.Name)
	}
	addTimezones(cal, apps...)
	for _, a := range apps {
		cal.Children = append(cal.Children, AppointmentEvent(opt, a).Component)
	}
	if err := EncodeICal(w, cal); err != nil {
		return fmt.Errorf("write iCal of %d appointments: %w", len(apps), err)
	}
	return nil
}

// AppointmentEvent returns the VEVENT of one appointment:
//
//   - UID "appointment-{id}@{Host}", the same in every calendar that holds it;
//   - DTSTAMP and LAST-MODIFIED the appointment's UpdatedAt (CreatedAt if
//     zero) and CREATED its CreatedAt, so the event does not depend on the
//     time it is written;
//   - DTSTART and DTEND with TZID and local times when the appointment has
//     an IANA time zone (the calendar then holds its VTIMEZONE: see
//     addTimezones), else in UTC: a bare offset names no zone, and the
//     instant in UTC is exact;
//   - SUMMARY, LOCATION (when set), URL (when opt.BaseURL is set);
//   - SEQUENCE Version-1, which starts at 0 and grows with every change;
//   - STATUS CONFIRMED or CANCELLED;
//   - one ATTENDEE per attendee, "mailto:" their address with CN their name.
//
// Attendees whose contact was deleted upstream are left out: they are no
// longer people the calendar knows, publishing their address to every
// subscriber would keep spreading it, and PARTSTAT=DECLINED would claim an
// answer they never gave. The UI still shows them as deleted.
//
// Text is escaped by go-ical (backslash, semicolon, comma, newline); invalid
// UTF-8 becomes U+FFFD and control characters other than newline and tab are
// dropped, as RFC 5545 forbids them. A double quote, which no parameter value
// can hold, becomes an apostrophe in CN. ORGANIZER is not set.
func AppointmentEvent(opt ICalOptions, a Appointment) *ical.Event {
	host := opt.Host
	if host == "" {
		host = icalDefaultHost
	}
	ev := ical.NewEvent()
	p := ev.Props
	setText(p, ical.PropUID, "appointment-"+strconv.FormatInt(a.ID, 10)+"@"+host)

	stamp := a.UpdatedAt
	if stamp.IsZero() {
		stamp = a.CreatedAt
	}
	p.SetDateTime(ical.PropDateTimeStamp, stamp.UTC())
	if !stamp.IsZero() {
		p.SetDateTime(ical.PropLastModified, stamp.UTC())
	}
	if !a.CreatedAt.IsZero() {
		p.SetDateTime(ical.PropCreated, a.CreatedAt.UTC())
	}
	if loc := a.Zone(); a.TimeZone != "" && loc != time.UTC {
		p.SetDateTime(ical.PropDateTimeStart, a.Start().In(loc)) // TZID=zone, local time; its VTIMEZONE is in the calendar
		p.SetDateTime(ical.PropDateTimeEnd, a.End().In(loc))
	} else {
		p.SetDateTime(ical.PropDateTimeStart, a.Start().UTC())
		p.SetDateTime(ical.PropDateTimeEnd, a.End().UTC())
	}

	setText(p, ical.PropSummary, a.Title)
	if a.Location != "" {
		setText(p, ical.PropLocation, a.Location)
	}
	link := ""
	if opt.BaseURL != "" {
		link = strings.TrimRight(opt.BaseURL, "/") + "/appointments/" + strconv.FormatInt(a.ID, 10)
		u := ical.NewProp(ical.PropURL)
		u.Value = link
		p.Set(u)
	}
	setText(p, ical.PropDescription, icalDescription(a, link))
	if o := opt.Organizer; o != nil {
		org := ical.NewProp(ical.PropOrganizer)
		org.Value = mailtoURI(o.Address)
		if cn := icalParam(o.Name); cn != "" {
			org.Params.Set(ical.ParamCommonName, cn)
		}
		p.Set(org)
	}
	seq := ical.NewProp(ical.PropSequence)
	seq.Value = strconv.FormatInt(max(a.Version-1, 0), 10)
	p.Set(seq)
	if a.Status == StatusCancelled {
		ev.SetStatus(ical.EventCancelled)
	} else {
		ev.SetStatus(ical.EventConfirmed)
	}

	for _, at := range a.Attendees {
		if at.Deleted || at.Email == "" { // see the doc comment
			continue
		}
		att := ical.NewProp(ical.PropAttendee)
		if cn := icalParam(at.Name); cn != "" {
			att.Params.Set(ical.ParamCommonName, cn)
		}
		att.Value = mailtoURI(at.Email)
		// Each participant is asked to answer (RFC 5545 3.2.17, 3.2.12,
		// 3.2.16): mail clients then show Accept / Decline.
		att.Params.Set(ical.ParamRole, "REQ-PARTICIPANT")
		att.Params.Set(ical.ParamParticipationStatus, "NEEDS-ACTION")
		att.Params.Set(ical.ParamRSVP, "TRUE")
		p.Add(att)
	}
	return ev
}

// icalDescription is an event's DESCRIPTION: who takes part, where, and
// the appointment's page.
func icalDescription(a Appointment, link string) string {
	var names []string
	for _, at := range a.Attendees {
		if !at.Deleted {
			names = append(names, at.Name)
		}
	}
	d := a.Title
	if len(names) > 0 {
		d += " with " + strings.Join(names, ", ")
	}
	if a.Location != "" {
		d += ", at " + a.Location
	}
	d += "."
	if link != "" {
		d += "\n" + link
	}
	return d
}

// EncodeICal writes cal as RFC 5545 text with go-ical's Encoder, folding
// every line longer than 75 octets (which go-ical does not do) without
// splitting a UTF-8 sequence. It also writes a VCALENDAR without components,
// which go-ical refuses: RFC 5545's grammar asks for one, but an empty
// calendar is what a subscription with nothing in it must look like, and
// calendar apps read it as such. Use it for any iCal body, such as mail
// invitations.
//
// Nothing is written to w unless the whole document encodes. EncodeICal
// returns go-ical's error for a component that breaks RFC 5545's rules (a
// VEVENT without UID, a line break in a value, a double quote in a parameter
// value), or the error of w.
func EncodeICal(w io.Writer, cal *ical.Calendar) error {
	empty := cal.Name == ical.CompCalendar && len(cal.Children) == 0
	if empty {
		c := *cal.Component
		c.Children = []*ical.Component{ical.NewComponent(icalPlaceholder)}
		cal = &ical.Calendar{Component: &c}
	}
	var buf bytes.Buffer
	if err := ical.NewEncoder(&buf).Encode(cal); err != nil {
		return err
	}
	doc := buf.Bytes()
	if empty {
		doc = bytes.Replace(doc, []byte("BEGIN:"+icalPlaceholder+"\r\nEND:"+icalPlaceholder+"\r\n"), nil, 1)
	}
	_, err := w.Write(foldICal(doc))
	return err
}

// foldICal returns doc, CRLF-terminated content lines, with every line longer
// than 75 octets split into a first line and continuation lines that begin
// with a space (RFC 5545 section 3.1), each at most 75 octets too. It cuts
// only at the start of a UTF-8 sequence, so every physical line is valid
// UTF-8 when doc is.
func foldICal(doc []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(doc) + len(doc)/(icalMaxLine-1)*3)
	for len(doc) > 0 {
		line, rest, _ := bytes.Cut(doc, []byte("\r\n"))
		doc = rest
		limit := icalMaxLine
		for len(line) > limit {
			cut := limit
			// Back off to a rune start, at most 3 octets: bytes that are
			// not UTF-8 still make progress.
			for i := 0; i < utf8.UTFMax-1 && !utf8.RuneStart(line[cut]); i++ {
				cut--
			}
			out.Write(line[:cut])
			out.WriteString("\r\n ")
			line = line[cut:]
			limit = icalMaxLine - 1 // the leading space counts
		}
		out.Write(line)
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// setText sets the TEXT property name to s, made fit by icalText and escaped
// by go-ical. TEXT is the default type of every property set this way, so
// the VALUE=TEXT go-ical adds to names it does not know (X-WR-CALNAME) is
// left out.
func setText(props ical.Props, name, s string) {
	prop := ical.NewProp(name)
	prop.SetText(icalText(s))
	prop.Params.Del(ical.ParamValue)
	props.Set(prop)
}

// icalText returns s fit for a TEXT value: valid UTF-8, CRLF and lone CR as
// a newline (which go-ical escapes as \n; a raw CR would make it fail), and
// no other control character but tab.
func icalText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}

// icalParam returns s fit for a parameter value, which go-ical quotes when
// it holds ';', ':' or ',' but cannot escape: valid UTF-8, a double quote as
// an apostrophe, line breaks and tabs as spaces, no other control character.
func icalParam(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\r\n", " ")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}

// mailtoURI returns the mailto URI (RFC 6068) of a bare address: octets
// other than letters, digits and "-._~!$'()*+,;:@" are percent-encoded, so
// "ada@example.org" stays as it is but "a&b@example.org" becomes
// "mailto:a%26b@example.org".
func mailtoURI(addr string) string {
	const keep = "-._~!$'()*+,;:@"
	var b strings.Builder
	b.WriteString("mailto:")
	for i := 0; i < len(addr); i++ {
		c := addr[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// addTimezones adds a VTIMEZONE for each IANA zone of apps (RFC 5545
// 3.6.5), covering their times: one STANDARD or DAYLIGHT observance per
// offset change from the one in force at the first start to the last end,
// read from Go's zone data, so an app without that zone (or with older
// rules) still shows each time right.
func addTimezones(cal *ical.Calendar, apps ...Appointment) {
	type span struct{ from, to time.Time }
	spans := map[string]*span{}
	var names []string
	for _, a := range apps {
		if a.TimeZone == "" || a.Zone() == time.UTC {
			continue
		}
		sp, ok := spans[a.TimeZone]
		if !ok {
			sp = &span{a.Start(), a.End()}
			spans[a.TimeZone] = sp
			names = append(names, a.TimeZone)
		}
		sp.from, sp.to = minTime(sp.from, a.Start()), maxTime(sp.to, a.End())
	}
	slices.Sort(names)
	for _, name := range names {
		loc, err := ianaZone(name)
		if err != nil {
			continue
		}
		cal.Children = append(cal.Children, vtimezone(loc, spans[name].from, spans[name].to))
	}
}

// vtimezone is loc's VTIMEZONE for the times from…to.
func vtimezone(loc *time.Location, from, to time.Time) *ical.Component {
	tz := ical.NewComponent(ical.CompTimezone)
	setText(tz.Props, ical.PropTimezoneID, loc.String())
	at, _ := from.In(loc).ZoneBounds() // when the offset in force at from began
	if at.IsZero() {                   // never changed before: one observance since 1970
		at = time.Date(1970, 1, 1, 0, 0, 0, 0, loc)
	}
	for {
		name, off := at.In(loc).Zone()
		_, before := at.Add(-time.Second).In(loc).Zone()
		kind := ical.CompTimezoneStandard
		if at.In(loc).IsDST() {
			kind = ical.CompTimezoneDaylight
		}
		ob := ical.NewComponent(kind)
		// DTSTART is the local time of the change in the offset before it.
		setText(ob.Props, ical.PropDateTimeStart, at.In(time.FixedZone("", before)).Format("20060102T150405"))
		setText(ob.Props, ical.PropTimezoneOffsetFrom, icalOffset(before))
		setText(ob.Props, ical.PropTimezoneOffsetTo, icalOffset(off))
		setText(ob.Props, ical.PropTimezoneName, name)
		tz.Children = append(tz.Children, ob)
		_, end := at.In(loc).ZoneBounds()
		if end.IsZero() || end.After(to) {
			return tz
		}
		at = end
	}
}

// icalOffset writes an offset in seconds as RFC 5545 does: +0100, -0530.
func icalOffset(sec int) string {
	sign := "+"
	if sec < 0 {
		sign, sec = "-", -sec
	}
	return fmt.Sprintf("%s%02d%02d", sign, sec/3600, sec%3600/60)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
