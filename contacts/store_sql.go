package contacts

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/feed"
	"syndic/shared/sqldb"
)

//go:embed migrations
var migrations embed.FS

// SQLStore is the Store on SQLite or PostgreSQL.
type SQLStore struct {
	db  *sqldb.DB
	now func() time.Time
	// events takes each write's event and appends a batch's events to the
	// log at once, just before the commit (see appendEvents).
	events *sqldb.Stage[stagedEvent]
	// failAt, when set (by tests), is called at each step inside a write
	// transaction; an error it returns aborts the transaction there.
	failAt func(step string) error
}

// NewSQLStore migrates db and returns a Store on it.
func NewSQLStore(ctx context.Context, db *sqldb.DB) (*SQLStore, error) {
	if err := db.Migrate(ctx, migrations); err != nil {
		return nil, err
	}
	s := &SQLStore{db: db, now: time.Now}
	s.events = sqldb.NewStage(s.appendEvents)
	return s, nil
}

const contactColumns = `id, name, email, phone, version, created_at, updated_at`

func scanContact(row sqldb.Scanner) (Contact, error) {
	var c Contact
	var created, updated int64
	if err := row.Scan(&c.ID, &c.Name, &c.Email, &c.Phone, &c.Version, &created, &updated); err != nil {
		return Contact{}, err
	}
	c.CreatedAt, c.UpdatedAt = sqldb.Time(created), sqldb.Time(updated)
	return c, nil
}

// List returns the contacts q selects.
func (s *SQLStore) List(ctx context.Context, q Query) ([]Contact, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	query := `SELECT ` + contactColumns + ` FROM contacts`
	args := []any{}
	if q.Search != "" {
		query += ` WHERE lower(name) LIKE $1 ESCAPE '\' OR lower(email) LIKE $1 ESCAPE '\' OR phone LIKE $1 ESCAPE '\'`
		args = append(args, sqldb.LikeContains(q.Search))
	}
	query += fmt.Sprintf(` ORDER BY lower(name), name, id LIMIT $%d OFFSET $%d`, len(args)+1, len(args)+2)
	args = append(args, q.Limit, max(q.Offset, 0))
	out, err := sqldb.All(ctx, s.db, scanContact, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list contacts: %w", err)
	}
	return out, nil
}

// Get returns contact id.
func (s *SQLStore) Get(ctx context.Context, id int64) (Contact, error) {
	return getContact(ctx, s.db, id)
}

func getContact(ctx context.Context, q sqldb.Querier, id int64) (Contact, error) {
	return sqldb.One(ctx, q, scanContact, fmt.Sprintf("contact %d", id), `SELECT `+contactColumns+` FROM contacts WHERE id = $1`, id)
}

// Create adds a contact and its contact.created event.
func (s *SQLStore) Create(ctx context.Context, in Input) (Contact, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	c := Contact{Version: 1, CreatedAt: now, UpdatedAt: now}.apply(in)
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		if err := s.insertContact(ctx, tx, &c); err != nil {
			return err
		}
		return s.appendEvent(ctx, tx, newEvent(EventCreated, Contact{}, c), now)
	})
	if err != nil {
		return Contact{}, fmt.Errorf("create contact: %w", err)
	}
	return c, nil
}

// insertContact inserts c and sets its id, unless another contact has its
// email (emailFree's problem then): one statement, the check inside it.
func (s *SQLStore) insertContact(ctx context.Context, tx *sqldb.Tx, c *Contact) error {
	err := tx.QueryRow(ctx,
		`INSERT INTO contacts (name, email, phone, version, created_at, updated_at) SELECT $1, $2, $3, $4, $5, $6
		WHERE NOT EXISTS (SELECT 1 FROM contacts WHERE lower(email) = lower($2)) RETURNING id`,
		c.Name, c.Email, c.Phone, c.Version, sqldb.Micro(c.CreatedAt), sqldb.Micro(c.UpdatedAt)).Scan(&c.ID)
	if errors.Is(err, sql.ErrNoRows) {
		if err := s.emailFree(ctx, tx, c.Email, 0); err != nil {
			return err
		}
		return fmt.Errorf("insert contact: email %s taken, then not: %w", c.Email, derrors.ErrConflict)
	}
	if sqldb.IsUnique(err, "contacts_email_unique") {
		return emailTaken() // by a write that committed while this one ran
	}
	if err != nil {
		return fmt.Errorf("insert contact: %w", err)
	}
	return nil
}

// emailTaken refuses an email that another write took at the same time,
// when the transaction can no longer look up by whom.
func emailTaken() error {
	return derrors.Problems{"email": "is already the email of another contact"}
}

// Import creates the contacts of ins (see Store.Import).
func (s *SQLStore) Import(ctx context.Context, ins []Input) (int, []ImportRefusal, error) {
	created := 0
	var refused []ImportRefusal
	for from := 0; from < len(ins); from += importChunk {
		chunk := ins[from:min(from+importChunk, len(ins))]
		now := s.now().UTC().Truncate(time.Microsecond)
		var n int
		var no []ImportRefusal
		err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
			n, no = 0, nil // a run again starts over
			for i, in := range chunk {
				if in == (Input{}) {
					continue
				}
				c := Contact{Version: 1, CreatedAt: now, UpdatedAt: now}.apply(in)
				err := s.insertContact(ctx, tx, &c)
				var p derrors.Problems
				switch {
				case errors.As(err, &p):
					no = append(no, ImportRefusal{Card: from + i + 1, Name: in.Name, Problems: p})
					continue
				case err != nil:
					return fmt.Errorf("card %d: %w", from+i+1, err)
				}
				s.events.Add(tx, stagedEvent{newEvent(EventCreated, Contact{}, c), now})
				n++
			}
			return nil
		})
		if err != nil {
			return created, refused, fmt.Errorf("import cards %d-%d: %w", from+1, from+len(chunk), err)
		}
		created += n
		refused = append(refused, no...)
	}
	return created, refused, nil
}

// Update changes contact id if it is at version. A change that alters
// nothing writes nothing and returns the contact as it is.
func (s *SQLStore) Update(ctx context.Context, id, version int64, in Input) (Contact, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	var after Contact
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		before, err := s.lockedAt(ctx, tx, id, version)
		if err != nil {
			return err
		}
		after = before.apply(in)
		if after == before {
			return nil
		}
		if !strings.EqualFold(after.Email, before.Email) {
			if err := s.emailFree(ctx, tx, after.Email, id); err != nil {
				return err
			}
		}
		after.Version, after.UpdatedAt = before.Version+1, now
		res, err := tx.Exec(ctx,
			`UPDATE contacts SET name = $1, email = $2, phone = $3, version = $4, updated_at = $5 WHERE id = $6 AND version = $7`,
			after.Name, after.Email, after.Phone, after.Version, sqldb.Micro(now), id, before.Version)
		if sqldb.IsUnique(err, "contacts_email_unique") {
			return emailTaken()
		}
		if err != nil {
			return fmt.Errorf("update contact: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return s.stale(ctx, tx, id, version)
		}
		return s.appendEvent(ctx, tx, newEvent(EventUpdated, before, after), now)
	})
	if err != nil {
		return Contact{}, fmt.Errorf("update contact %d: %w", id, err)
	}
	return after, nil
}

// Delete removes contact id (if at version, unless version is 0) and
// appends its tombstone: the contact as it was, one version on.
func (s *SQLStore) Delete(ctx context.Context, id, version int64) error {
	now := s.now().UTC().Truncate(time.Microsecond)
	err := s.db.Write(ctx, func(tx *sqldb.Tx) error {
		before, err := s.lockedAt(ctx, tx, id, version)
		if err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM contacts WHERE id = $1 AND version = $2`, id, before.Version)
		if err != nil {
			return fmt.Errorf("delete contact: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return s.stale(ctx, tx, id, version)
		}
		gone := before
		gone.Version, gone.UpdatedAt = before.Version+1, now
		return s.appendEvent(ctx, tx, newEvent(EventDeleted, before, gone), now)
	})
	if err != nil {
		return fmt.Errorf("delete contact %d: %w", id, err)
	}
	return nil
}

// lockedAt reads contact id inside tx and checks it is at version (0: any).
func (s *SQLStore) lockedAt(ctx context.Context, tx *sqldb.Tx, id, version int64) (Contact, error) {
	c, err := getContact(ctx, tx, id)
	if err != nil {
		return Contact{}, err
	}
	if version != 0 && c.Version != version {
		return Contact{}, &StaleError{Based: version, Current: c}
	}
	return c, nil
}

// emailFree refuses email when a contact other than id has it, in any
// case: calendar invites each participant at their email, so two contacts
// with one address would get every invitation twice.
func (s *SQLStore) emailFree(ctx context.Context, tx *sqldb.Tx, email string, id int64) error {
	var other int64
	var name string
	err := tx.QueryRow(ctx, `SELECT id, name FROM contacts WHERE lower(email) = lower($1) AND id <> $2 LIMIT 1`, email, id).Scan(&other, &name)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("check email: %w", err)
	}
	return derrors.Problems{"email": fmt.Sprintf("is already the email of %s (contact %d)", name, other)}
}

func (s *SQLStore) stale(ctx context.Context, tx *sqldb.Tx, id, version int64) error {
	c, err := getContact(ctx, tx, id)
	if err != nil {
		return err
	}
	return &StaleError{Based: version, Current: c}
}

// appendEvent takes the next seq and writes e, inside the change's tx.
func (s *SQLStore) appendEvent(ctx context.Context, tx *sqldb.Tx, e event, at time.Time) error {
	if err := s.fail("after-change"); err != nil {
		return err
	}
	s.events.Add(tx, stagedEvent{e, at})
	return s.fail("after-event")
}

// stagedEvent is an event waiting for its batch's appendEvents.
type stagedEvent struct {
	event
	at time.Time
}

// appendEvents gives the events of a batch of writes the next seqs, in the
// order the writes ran, and inserts them with one statement. Taking the
// seqs locks the event_head row until the commit, which comes next: events
// commit in seq order with no gaps, and the lock is held for the end of
// the transaction only, not for the whole batch.
func (s *SQLStore) appendEvents(ctx context.Context, tx *sqldb.Tx, es []stagedEvent) error {
	if s.db.Dialect == sqldb.Postgres {
		return s.appendEventsPG(ctx, tx, es)
	}
	var head int64
	if err := tx.QueryRow(ctx, `UPDATE event_head SET seq = seq + $1 WHERE id = 1 RETURNING seq`, len(es)).Scan(&head); err != nil {
		return fmt.Errorf("next seqs: %w", err)
	}
	first := head - int64(len(es)) + 1
	var q strings.Builder
	q.WriteString(`INSERT INTO events (seq, type, contact_id, title, summary, data, created_at) VALUES `)
	args := eventRows(&q, nil, es, first, "($%d, $%d, $%d, $%d, $%d, $%d, $%d)")
	if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("insert events %d-%d: %w", first, head, err)
	}
	return nil
}

// appendEventsPG is appendEvents in one statement on PostgreSQL: the seqs
// are taken and the events inserted in one round trip, so the event_head
// row lock is held from then to the commit only — what another replica's
// batch waits for.
func (s *SQLStore) appendEventsPG(ctx context.Context, tx *sqldb.Tx, es []stagedEvent) error {
	var q strings.Builder
	q.WriteString(`WITH h AS (UPDATE event_head SET seq = seq + $1 WHERE id = 1 RETURNING seq)
		INSERT INTO events (seq, type, contact_id, title, summary, data, created_at)
		SELECT h.seq - $1 + v.n, v.type, v.contact_id, v.title, v.summary, v.data, v.created_at FROM h, (VALUES `)
	args := eventRows(&q, []any{int64(len(es))}, es, 1, "($%d::bigint, $%d::text, $%d::bigint, $%d::text, $%d::text, $%d::text, $%d::bigint)")
	q.WriteString(`) AS v(n, type, contact_id, title, summary, data, created_at)`)
	if _, err := tx.Exec(ctx, q.String(), args...); err != nil {
		return fmt.Errorf("append %d events: %w", len(es), err)
	}
	return nil
}

// eventRows writes es to q as VALUES rows in the form row (seven numbered
// parameters), numbered on from args, the first column n, n+1, … from
// first, and returns args with the rows' values.
func eventRows(q *strings.Builder, args []any, es []stagedEvent, first int64, row string) []any {
	for i, e := range es {
		if i > 0 {
			q.WriteString(", ")
		}
		n := len(args)
		fmt.Fprintf(q, row, n+1, n+2, n+3, n+4, n+5, n+6, n+7)
		args = append(args, first+int64(i), e.Type, e.ContactID, e.Title, e.Summary, string(e.Data), sqldb.Micro(e.at))
	}
	return args
}

func (s *SQLStore) fail(step string) error {
	if s.failAt == nil {
		return nil
	}
	return s.failAt(step)
}

// Head returns the last committed seq.
func (s *SQLStore) Head(ctx context.Context) (int64, error) {
	var seq int64
	if err := s.db.QueryRow(ctx, `SELECT seq FROM event_head WHERE id = 1`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("event head: %w", err)
	}
	return seq, nil
}

// Events returns the events first…last in seq order.
func (s *SQLStore) Events(ctx context.Context, first, last int64) ([]feed.Event, error) {
	rows, err := s.db.Query(ctx,
		`SELECT seq, type, contact_id, title, summary, data, created_at FROM events WHERE seq >= $1 AND seq <= $2 ORDER BY seq`, first, last)
	if err != nil {
		return nil, fmt.Errorf("events %d-%d: %w", first, last, err)
	}
	defer rows.Close()
	out := make([]feed.Event, 0, max(0, min(last-first+1, 1000)))
	for rows.Next() {
		var e feed.Event
		var contactID, at int64
		var data string
		if err := rows.Scan(&e.Seq, &e.Type, &contactID, &e.Title, &e.Summary, &data, &at); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		e.Data, e.Time = []byte(data), sqldb.Time(at)
		e.Link = "/contacts/" + strconv.FormatInt(contactID, 10)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return out, nil
}
