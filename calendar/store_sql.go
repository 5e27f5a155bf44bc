package calendar

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/feed"
	"syndic/shared/sqldb"
)

//go:embed migrations
var migrations embed.FS

// SQLStore is the Store on SQLite or PostgreSQL. Every change of an
// appointment writes its notification requests, worded by mailer, into the
// outbox in the same transaction; the commit wakes the Notifier. With a
// handoff (HandTo), the entries are also claimed in that transaction and
// handed to it after the commit, when it has room.
type SQLStore struct {
	db      *sqldb.DB
	now     func() time.Time
	mailer  Mailer
	handoff handoff
}

// handoff takes outbox entries claimed in the transaction that wrote them.
type handoff interface {
	// claimUntil says whether to claim the entries written at now, and
	// until when.
	claimUntil(now time.Time) (time.Time, bool)
	// hand queues entries claimed until until, once committed.
	hand(ctx context.Context, es []OutboxEntry, until time.Time)
}

// HandTo makes every change claim its outbox entries for n in its own
// transaction and hand them over after the commit, when n has room (no
// claim transaction of their own); otherwise n's sweep finds them.
func (s *SQLStore) HandTo(n *Notifier) { s.handoff = n }

// written is what announce wrote in one transaction: the entries it claimed
// for the handoff, and until when.
type written struct {
	claimed []OutboxEntry
	until   time.Time
}

// handOver hands w's claimed entries over once their transaction committed.
func (s *SQLStore) handOver(ctx context.Context, w *written, err error) {
	if err == nil && len(w.claimed) > 0 {
		s.handoff.hand(ctx, w.claimed, w.until)
	}
}

// NewSQLStore migrates db (with the feed follower's schema) and returns a
// Store on it whose notifications mailer words.
func NewSQLStore(ctx context.Context, db *sqldb.DB, mailer Mailer) (*SQLStore, error) {
	if err := db.Migrate(ctx, migrations, feed.Migrations()); err != nil {
		return nil, err
	}
	if mailer.ICal.Host == "" {
		host, err := installHost(ctx, db)
		if err != nil {
			return nil, err
		}
		mailer.ICal.Host = host
	}
	return &SQLStore{db: db, now: time.Now, mailer: mailer}, nil
}

// UIDHost is the domain of this calendar's iCal UIDs: BASE_URL's host, or
// else this install's own (installHost).
func (s *SQLStore) UIDHost() string { return s.mailer.ICal.Host }

// installHost is this install's UID domain when BASE_URL names none: made
// once, at the first start, and kept in the database — random
// ("i3f9c….syndic-calendar"), so two installs' appointment-1 are two events
// to a calendar app; or icalDefaultHost for a database that already has
// appointments, whose subscribers know their UIDs by it.
func installHost(ctx context.Context, db *sqldb.DB) (string, error) {
	var host string
	err := db.QueryRow(ctx, `SELECT uid_host FROM install WHERE id = 1`).Scan(&host)
	if err == nil {
		return host, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("install: %w", err)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM appointments`).Scan(&n); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	host = icalDefaultHost
	if n == 0 {
		var b [6]byte
		rand.Read(b[:])
		host = "i" + hex.EncodeToString(b[:]) + "." + icalDefaultHost
	}
	// Another replica may have just made it: its name stands.
	if _, err := db.Exec(ctx, `INSERT INTO install (id, uid_host) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, host); err != nil {
		return "", fmt.Errorf("install: %w", err)
	}
	err = db.QueryRow(ctx, `SELECT uid_host FROM install WHERE id = 1`).Scan(&host)
	return host, err
}

// announce writes the outbox entries for the change before → after of
// appointment id, inside tx, and returns after as committed.
func (s *SQLStore) announce(ctx context.Context, tx *sqldb.Tx, w *written, before Appointment, id int64, now time.Time) (Appointment, error) {
	after, err := s.appointment(ctx, tx, id)
	if err != nil {
		return Appointment{}, err
	}
	es := s.mailer.entries(before, after)
	var until time.Time
	if s.handoff != nil && len(es) > 0 {
		until, _ = s.handoff.claimUntil(now)
	}
	if err := writeOutbox(ctx, tx, es, now, until); err != nil {
		return Appointment{}, err
	}
	if !until.IsZero() {
		w.claimed, w.until = es, until
	}
	return after, nil
}

const appointmentColumns = `id, title, starts_at, ends_at, time_zone, location, status, version, created_at, updated_at`

func scanAppointment(row sqldb.Scanner) (Appointment, error) {
	var a Appointment
	var created, updated int64
	if err := row.Scan(&a.ID, &a.Title, &a.StartsAt, &a.EndsAt, &a.TimeZone, &a.Location, &a.Status, &a.Version, &created, &updated); err != nil {
		return Appointment{}, err
	}
	a.CreatedAt, a.UpdatedAt = sqldb.Time(created), sqldb.Time(updated)
	a.Participants, a.Attendees = []int64{}, []Attendee{}
	return a, nil
}

// Appointments lists the appointments q selects, in start order.
func (s *SQLStore) Appointments(ctx context.Context, q AppointmentQuery) ([]Appointment, error) {
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if !q.From.IsZero() {
		where = append(where, "end_utc > "+arg(sqldb.Micro(q.From)))
	}
	if !q.WithCancelled {
		where = append(where, "status = "+arg(StatusConfirmed))
	}
	if q.Participant != 0 {
		where = append(where, "id IN (SELECT appointment_id FROM participants WHERE contact_id = "+arg(q.Participant)+")")
	}
	query := `SELECT ` + appointmentColumns + ` FROM appointments`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	query += " ORDER BY start_utc, id LIMIT " + arg(limit) + " OFFSET " + arg(max(q.Offset, 0))
	out, err := sqldb.All(ctx, s.db, scanAppointment, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list appointments: %w", err)
	}
	if err := s.attendees(ctx, s.db, out); err != nil {
		return nil, err
	}
	return out, nil
}

// attendees fills in the participants of apps.
func (s *SQLStore) attendees(ctx context.Context, q sqldb.Querier, apps []Appointment) error {
	byID := map[int64]*Appointment{}
	for i := range apps {
		byID[apps[i].ID] = &apps[i]
	}
	for chunk := range slices.Chunk(apps, maxIDs) {
		if err := s.attendeesOf(ctx, q, chunk, byID); err != nil {
			return err
		}
	}
	return nil
}

// maxIDs is the most appointments attendeesOf asks about at once.
const maxIDs = 512

// attendeesOf fills in the participants of up to maxIDs apps. The id list
// is padded (with its last id again) to 1, 8, 64 or 512 ids, so four
// statements, each prepared once, serve every list.
func (s *SQLStore) attendeesOf(ctx context.Context, q sqldb.Querier, apps []Appointment, byID map[int64]*Appointment) error {
	n := 1
	for n < len(apps) {
		n *= 8
	}
	marks := make([]string, n)
	args := make([]any, n)
	for i := range n {
		marks[i] = fmt.Sprintf("$%d", i+1)
		args[i] = apps[min(i, len(apps)-1)].ID
	}
	rows, err := q.Query(ctx, `SELECT p.appointment_id, c.id, c.name, c.email, c.deleted
		FROM participants p JOIN contacts c ON c.id = p.contact_id
		WHERE p.appointment_id IN (`+strings.Join(marks, ",")+`) ORDER BY c.name, c.id`, args...)
	if err != nil {
		return fmt.Errorf("participants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var appID int64
		var at Attendee
		if err := rows.Scan(&appID, &at.ID, &at.Name, &at.Email, &at.Deleted); err != nil {
			return fmt.Errorf("participants: %w", err)
		}
		a := byID[appID]
		a.Participants = append(a.Participants, at.ID)
		a.Attendees = append(a.Attendees, at)
	}
	return rows.Err()
}

// Appointment returns appointment id.
func (s *SQLStore) Appointment(ctx context.Context, id int64) (Appointment, error) {
	return s.appointment(ctx, s.db, id)
}

func (s *SQLStore) appointment(ctx context.Context, q sqldb.Querier, id int64) (Appointment, error) {
	a, err := sqldb.One(ctx, q, scanAppointment, fmt.Sprintf("appointment %d", id), `SELECT `+appointmentColumns+` FROM appointments WHERE id = $1`, id)
	if err != nil {
		return Appointment{}, err
	}
	apps := []Appointment{a}
	if err := s.attendees(ctx, q, apps); err != nil {
		return Appointment{}, err
	}
	return apps[0], nil
}

// Create adds an appointment.
func (s *SQLStore) Create(ctx context.Context, in Input) (Appointment, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	var id int64
	var out Appointment
	var w written
	if err := notPast(in, now); err != nil {
		return Appointment{}, fmt.Errorf("create appointment: %w", err)
	}
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		w = written{}
		if err := checkParticipants(ctx, tx, in.Participants, nil); err != nil {
			return err
		}
		a := Appointment{StartsAt: in.StartsAt, EndsAt: in.EndsAt}
		err := tx.QueryRow(ctx, `INSERT INTO appointments (title, starts_at, ends_at, time_zone, start_utc, end_utc, location, status, version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) RETURNING id`,
			in.Title, in.StartsAt, in.EndsAt, in.TimeZone, sqldb.Micro(a.Start()), sqldb.Micro(a.End()), in.Location, StatusConfirmed, sqldb.Micro(now)).Scan(&id)
		if err != nil {
			return fmt.Errorf("insert appointment: %w", err)
		}
		if err := setParticipants(ctx, tx, id, in.Participants); err != nil {
			return err
		}
		out, err = s.announce(ctx, tx, &w, Appointment{}, id, now)
		return err
	})
	s.handOver(ctx, &w, err)
	if err != nil {
		return Appointment{}, fmt.Errorf("create appointment: %w", err)
	}
	return out, nil
}

// Update changes appointment id if it is at version. A change that alters
// nothing writes nothing.
func (s *SQLStore) Update(ctx context.Context, id, version int64, in Input) (Appointment, error) {
	return s.change(ctx, "update", id, version, func(tx *sqldb.Tx, w *written, before Appointment, now time.Time) (Appointment, error) {
		if before.Status == StatusCancelled {
			return Appointment{}, fmt.Errorf("appointment %d is cancelled: %w", id, derrors.ErrConflict)
		}
		if err := checkParticipants(ctx, tx, in.Participants, before.Participants); err != nil {
			return Appointment{}, err
		}
		if unchanged(before, in) {
			return before, nil
		}
		if moved := (Appointment{StartsAt: in.StartsAt}); !moved.Start().Equal(before.Start()) {
			if err := notPast(in, now); err != nil { // moved: not into the past
				return Appointment{}, err
			}
		}
		a := Appointment{StartsAt: in.StartsAt, EndsAt: in.EndsAt}
		err := s.bump(ctx, tx, before, version, `UPDATE appointments SET title = $3, starts_at = $4, ends_at = $5, start_utc = $6, end_utc = $7,
			location = $8, version = version + 1, updated_at = $9, time_zone = $10 WHERE id = $1 AND version = $2`,
			in.Title, in.StartsAt, in.EndsAt, sqldb.Micro(a.Start()), sqldb.Micro(a.End()), in.Location, sqldb.Micro(now), in.TimeZone)
		if err != nil {
			return Appointment{}, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM participants WHERE appointment_id = $1`, id); err != nil {
			return Appointment{}, fmt.Errorf("update participants: %w", err)
		}
		if err := setParticipants(ctx, tx, id, in.Participants); err != nil {
			return Appointment{}, err
		}
		return s.announce(ctx, tx, w, before, id, now)
	})
}

// PastGrace is how far in the past an appointment may start when it is
// booked or moved: a meeting that began a moment ago can still be noted;
// one years ago is a typo, and its invitations would go out.
const PastGrace = 24 * time.Hour

// notPast refuses in when it starts more than PastGrace before now.
func notPast(in Input, now time.Time) error {
	if start := (Appointment{StartsAt: in.StartsAt}).Start(); start.Before(now.Add(-PastGrace)) {
		return derrors.Problems{"starts_at": fmt.Sprintf("is more than %d hours in the past: book or move appointments from now on", PastGrace/time.Hour)}
	}
	return nil
}

func unchanged(a Appointment, in Input) bool {
	return a.Title == in.Title && a.StartsAt == in.StartsAt && a.EndsAt == in.EndsAt && a.TimeZone == in.TimeZone && a.Location == in.Location &&
		slices.Equal(slices.Sorted(slices.Values(a.Participants)), slices.Sorted(slices.Values(in.Participants)))
}

// Cancel marks appointment id cancelled. Cancelling a cancelled
// appointment changes nothing.
func (s *SQLStore) Cancel(ctx context.Context, id, version int64) (Appointment, error) {
	return s.change(ctx, "cancel", id, version, func(tx *sqldb.Tx, w *written, before Appointment, now time.Time) (Appointment, error) {
		if before.Status == StatusCancelled {
			return before, nil
		}
		err := s.bump(ctx, tx, before, version, `UPDATE appointments SET status = $3, version = version + 1, updated_at = $4 WHERE id = $1 AND version = $2`,
			StatusCancelled, sqldb.Micro(now))
		if err != nil {
			return Appointment{}, err
		}
		return s.announce(ctx, tx, w, before, id, now)
	})
}

// change runs fn in a write transaction on appointment id, read there and
// checked to be at version (0: any); fn returns the appointment as answered.
func (s *SQLStore) change(ctx context.Context, verb string, id, version int64, fn func(tx *sqldb.Tx, w *written, before Appointment, now time.Time) (Appointment, error)) (Appointment, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	var out Appointment
	var w written
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		w = written{}
		before, err := s.at(ctx, tx, id, version)
		if err != nil {
			return err
		}
		out, err = fn(tx, &w, before, now)
		return err
	})
	s.handOver(ctx, &w, err)
	if err != nil {
		return Appointment{}, fmt.Errorf("%s appointment %d: %w", verb, id, err)
	}
	return out, nil
}

// bump runs update, whose $1 and $2 are the appointment's id and version
// (args are $3 on), and answers a StaleError when another change came first.
func (s *SQLStore) bump(ctx context.Context, tx *sqldb.Tx, before Appointment, version int64, update string, args ...any) error {
	res, err := tx.Exec(ctx, update, append([]any{before.ID, before.Version}, args...)...)
	if err != nil {
		return fmt.Errorf("write appointment: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return s.stale(ctx, tx, before.ID, version)
	}
	return nil
}

// at reads appointment id in tx and checks it is at version (0: any).
func (s *SQLStore) at(ctx context.Context, tx *sqldb.Tx, id, version int64) (Appointment, error) {
	a, err := s.appointment(ctx, tx, id)
	if err != nil {
		return Appointment{}, err
	}
	if version != 0 && a.Version != version {
		return Appointment{}, &StaleError{Based: version, Current: a}
	}
	return a, nil
}

func (s *SQLStore) stale(ctx context.Context, tx *sqldb.Tx, id, version int64) error {
	a, err := s.appointment(ctx, tx, id)
	if err != nil {
		return err
	}
	return &StaleError{Based: version, Current: a}
}

// checkParticipants refuses ids missing from the local copy, and ids
// deleted upstream unless they are already on the appointment (kept).
func checkParticipants(ctx context.Context, tx *sqldb.Tx, ids, kept []int64) error {
	p := derrors.Problems{}
	for _, id := range ids {
		var deleted bool
		err := tx.QueryRow(ctx, `SELECT deleted FROM contacts WHERE id = $1`, id).Scan(&deleted)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			p.Add("participants", fmt.Sprintf("contact %d is not known here (yet): pick someone from the contacts list", id))
		case err != nil:
			return fmt.Errorf("participant %d: %w", id, err)
		case deleted && !slices.Contains(kept, id):
			p.Add("participants", fmt.Sprintf("contact %d was deleted", id))
		}
	}
	return p.Err()
}

func setParticipants(ctx context.Context, tx *sqldb.Tx, id int64, contacts []int64) error {
	for _, c := range contacts {
		if _, err := tx.Exec(ctx, `INSERT INTO participants (appointment_id, contact_id) VALUES ($1, $2)`, id, c); err != nil {
			return fmt.Errorf("participant %d: %w", c, err)
		}
	}
	return nil
}

const contactColumns = `id, name, email, phone, version, deleted, updated_at, seq`

func scanContact(row sqldb.Scanner) (Contact, error) {
	var c Contact
	var updated int64
	if err := row.Scan(&c.ID, &c.Name, &c.Email, &c.Phone, &c.Version, &c.Deleted, &updated, &c.Seq); err != nil {
		return Contact{}, err
	}
	c.UpdatedAt = sqldb.Time(updated)
	return c, nil
}

// Contacts lists the local copy in name order.
func (s *SQLStore) Contacts(ctx context.Context) ([]Contact, error) {
	out, err := sqldb.All(ctx, s.db, scanContact, `SELECT `+contactColumns+` FROM contacts ORDER BY name, id`)
	if err != nil {
		return nil, fmt.Errorf("contacts: %w", err)
	}
	return out, nil
}

// FindContacts lists a page of the local copy (see Store.FindContacts).
func (s *SQLStore) FindContacts(ctx context.Context, search string, limit, offset int) ([]Contact, error) {
	like := sqldb.LikeContains(search)
	out, err := sqldb.All(ctx, s.db, scanContact, `SELECT `+contactColumns+` FROM contacts
		WHERE lower(name) LIKE $1 ESCAPE '\' OR lower(email) LIKE $1 ESCAPE '\' ORDER BY lower(name), name, id LIMIT $2 OFFSET $3`, like, limit, offset)
	if err != nil {
		return nil, fmt.Errorf("find contacts: %w", err)
	}
	return out, nil
}

// Contact returns contact id from the local copy.
func (s *SQLStore) Contact(ctx context.Context, id int64) (Contact, error) {
	return sqldb.One(ctx, s.db, scanContact, fmt.Sprintf("contact %d", id), `SELECT `+contactColumns+` FROM contacts WHERE id = $1`, id)
}
