package calendar

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"syndic/shared/feed"
	"syndic/shared/sqldb"
)

// Event types of the contacts feed.
const (
	contactCreated = "contact.created"
	contactUpdated = "contact.updated"
	contactDeleted = "contact.deleted"
)

// feedContact is the machine part of a contacts feed entry.
type feedContact struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Phone     string    `json:"phone"`
	Version   int64     `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ApplyContactEvent applies one contacts feed event to the local copy,
// inside the follower's transaction. A deletion keeps the row, marked
// deleted, for the appointments it is on. An event it cannot understand
// is an error: the follower stops there rather than skip it.
func ApplyContactEvent(ctx context.Context, tx *sqldb.Tx, e feed.Event) error {
	var c feedContact
	if err := json.Unmarshal(e.Data, &c); err != nil {
		return fmt.Errorf("contact JSON: %w", err)
	}
	if c.ID < 1 || c.Name == "" || c.Version < 1 {
		return fmt.Errorf("contact JSON lacks id, name or version: %s", e.Data)
	}
	var deleted bool
	switch e.Type {
	case contactCreated, contactUpdated:
	case contactDeleted:
		deleted = true
	default:
		return fmt.Errorf("unknown event type %q", e.Type)
	}
	_, err := tx.Exec(ctx, `INSERT INTO contacts (id, name, email, phone, version, deleted, updated_at, seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email, phone = excluded.phone,
			version = excluded.version, deleted = excluded.deleted, updated_at = excluded.updated_at, seq = excluded.seq`,
		c.ID, c.Name, c.Email, c.Phone, c.Version, deleted, sqldb.Micro(c.UpdatedAt), e.Seq)
	if err != nil {
		return fmt.Errorf("contact %d: %w", c.ID, err)
	}
	return nil
}
