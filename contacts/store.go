package contacts

import (
	"context"
	"fmt"

	"syndic/shared/derrors"
	"syndic/shared/feed"
)

// Store keeps contacts and their event log. Every method that changes a
// contact appends its event in the same transaction.
//
// Get, Update and Delete wrap derrors.ErrNotFound for an unknown id; Update
// and Delete return a *StaleError (which wraps derrors.ErrConflict) when the
// contact is no longer at the version the change was based on.
type Store interface {
	List(ctx context.Context, q Query) ([]Contact, error)
	Get(ctx context.Context, id int64) (Contact, error)
	Create(ctx context.Context, in Input) (Contact, error)
	// Update applies in to contact id if it is still at version.
	Update(ctx context.Context, id, version int64, in Input) (Contact, error)
	// Delete removes contact id if it is at version; version 0 skips the check.
	Delete(ctx context.Context, id, version int64) error
	// Import creates a contact, and its event, for each valid Input of ins
	// (a zero Input is skipped), importChunk to a transaction. One whose
	// email another contact has is refused by its position (1 for ins[0]).
	// An error stops the import: the chunks before it are committed.
	Import(ctx context.Context, ins []Input) (created int, refused []ImportRefusal, err error)
	feed.Source
}

// Query selects contacts: a case-insensitive substring of name, email or
// phone, in name order, a page at a time.
type Query struct {
	Search string
	Limit  int
	Offset int
}

// StaleError says a change was based on an old version.
type StaleError struct {
	Based   int64
	Current Contact
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("contact %d was changed meanwhile: it is at version %d, the change was based on version %d", e.Current.ID, e.Current.Version, e.Based)
}

// Is makes a StaleError match derrors.ErrConflict.
func (e *StaleError) Is(target error) bool { return target == derrors.ErrConflict }
