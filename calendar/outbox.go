package calendar

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-ical"

	"syndic/shared/sqldb"
)

// Kinds of notification calendar sends to participants.
const (
	KindInvitation   = "invitation"
	KindChange       = "change"
	KindCancellation = "cancellation"
)

// OutboxEntry is a notification request waiting in, or delivered from,
// calendar's outbox.
type OutboxEntry struct {
	ID            int64     `json:"id"`
	AppointmentID int64     `json:"appointment_id"`
	ContactID     int64     `json:"contact_id"`
	Kind          string    `json:"kind"`
	To            string    `json:"to"`
	Subject       string    `json:"subject"`
	Text          string    `json:"text"`
	Calendar      string    `json:"calendar"`
	Key           string    `json:"idempotency_key"`
	Status        string    `json:"status"` // pending, sent, failed
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"last_error,omitempty"`
	NextAttemptAt time.Time `json:"next_attempt_at"`
}

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
			Text:     m.text(kind, after, p),
			Calendar: m.calendar(kind, after),
			Key:      fmt.Sprintf("calendar-appointment-%d-v%d-contact-%d-%s", after.ID, after.Version, p.ID, kind),
		})
	}
	return out
}

// maxSubject is what notifications accepts as a subject.
const maxSubject = 200

func (m Mailer) subject(kind string, a Appointment) string {
	prefix := map[string]string{KindInvitation: "Invitation", KindChange: "Changed", KindCancellation: "Cancelled"}[kind] + ": "
	when := " — " + a.Start().Format("Mon 2 Jan 2006 15:04") + " (" + zoneName(a.Start()) + ")"
	title := []rune(a.Title)
	if room := maxSubject - utf8.RuneCountInString(prefix+when); len(title) > room {
		title = append(title[:room-1], '…')
	}
	return prefix + string(title) + when
}

func (m Mailer) text(kind string, a Appointment, to Attendee) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\n", to.Name)
	switch {
	case kind == KindInvitation:
		fmt.Fprintf(&b, "you are invited to “%s”.\n\n", a.Title)
	case kind == KindChange:
		fmt.Fprintf(&b, "“%s” has changed. This is how it stands now:\n\n", a.Title)
	case a.Status == StatusCancelled:
		fmt.Fprintf(&b, "“%s” is cancelled.\n\n", a.Title)
	default:
		fmt.Fprintf(&b, "you are no longer a participant of “%s”.\n\n", a.Title)
	}
	fmt.Fprintf(&b, "When:  %s – %s (%s)\n", a.Start().Format("Mon 2 Jan 2006 15:04"), a.End().Format("15:04"), zoneName(a.Start()))
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
	ev := AppointmentEvent(m.ICal, a)
	org := ical.NewProp(ical.PropOrganizer)
	org.Value = "mailto:calendar@" + m.ICal.Host
	org.Params.Set(ical.ParamCommonName, "syndic calendar")
	ev.Props.Set(org)
	cal.Children = append(cal.Children, ev.Component)
	var b bytes.Buffer
	if err := EncodeICal(&b, cal); err != nil {
		return "" // an appointment always encodes; the mail goes without the part otherwise
	}
	return b.String()
}

func zoneName(t time.Time) string {
	_, off := t.Zone()
	if off == 0 {
		return "UTC"
	}
	return t.Format("UTC-07:00")
}

// writeOutbox inserts entries in tx.
func writeOutbox(ctx context.Context, tx *sqldb.Tx, entries []OutboxEntry, now time.Time) error {
	t := sqldb.Micro(now)
	for _, e := range entries {
		_, err := tx.Exec(ctx, `INSERT INTO outbox (appointment_id, contact_id, kind, to_address, subject, body, calendar, idempotency_key, next_attempt_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9)`,
			e.AppointmentID, e.ContactID, e.Kind, e.To, e.Subject, e.Text, e.Calendar, e.Key, t)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
	}
	return nil
}

const outboxColumns = `id, appointment_id, contact_id, kind, to_address, subject, body, calendar, idempotency_key, status, attempts, last_error, next_attempt_at`

func scanOutbox(row scanner) (OutboxEntry, error) {
	var e OutboxEntry
	var next int64
	err := row.Scan(&e.ID, &e.AppointmentID, &e.ContactID, &e.Kind, &e.To, &e.Subject, &e.Text, &e.Calendar, &e.Key, &e.Status, &e.Attempts, &e.LastError, &next)
	e.NextAttemptAt = sqldb.Time(next)
	return e, err
}

func (s *SQLStore) queryOutbox(ctx context.Context, where string, args ...any) ([]OutboxEntry, error) {
	rows, err := s.db.Query(ctx, `SELECT `+outboxColumns+` FROM outbox WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	defer rows.Close()
	out := []OutboxEntry{}
	for rows.Next() {
		e, err := scanOutbox(rows)
		if err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Notifications lists the outbox entries of appointment id, oldest first.
func (s *SQLStore) Notifications(ctx context.Context, id int64) ([]OutboxEntry, error) {
	return s.queryOutbox(ctx, `appointment_id = $1 ORDER BY id`, id)
}

// OutboxEntry returns entry id.
func (s *SQLStore) OutboxEntry(ctx context.Context, id int64) (OutboxEntry, error) {
	es, err := s.queryOutbox(ctx, `id = $1`, id)
	if err != nil {
		return OutboxEntry{}, err
	}
	if len(es) == 0 {
		return OutboxEntry{}, fmt.Errorf("outbox entry %d: %w", id, sql.ErrNoRows)
	}
	return es[0], nil
}

// DueOutbox returns the ids of pending entries due at now, oldest first.
func (s *SQLStore) DueOutbox(ctx context.Context, now time.Time, limit int) ([]int64, error) {
	rows, err := s.db.Query(ctx, fmt.Sprintf(`SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT %d`, limit), sqldb.Micro(now))
	if err != nil {
		return nil, fmt.Errorf("due outbox: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// PendingOutbox counts the entries not yet delivered or failed.
func (s *SQLStore) PendingOutbox(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE status = 'pending'`).Scan(&n)
	return n, err
}

// MarkOutbox records an attempt: status (sent, failed or pending again),
// attempts so far, the last error and, when pending, the next attempt.
func (s *SQLStore) MarkOutbox(ctx context.Context, id int64, status string, attempts int, lastErr string, next time.Time) error {
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE outbox SET status = $1, attempts = $2, last_error = $3, next_attempt_at = $4, updated_at = $5 WHERE id = $6 AND status = 'pending'`,
			status, attempts, lastErr, sqldb.Micro(next), sqldb.Micro(time.Now()), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("outbox %d: %w", id, err)
	}
	return nil
}
