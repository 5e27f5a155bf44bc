package calendar

import (
	"context"
	"fmt"
	"time"

	"syndic/shared/derrors"
)

// Store keeps appointments and the local copy of contacts.
//
// Appointment, Update and Cancel wrap derrors.ErrNotFound for an unknown id;
// Update and Cancel return a *StaleError (wrapping derrors.ErrConflict) when
// the appointment is no longer at the version the change was based on;
// Update of a cancelled appointment wraps derrors.ErrConflict.
// Create and Update answer derrors.Problems when a participant is unknown or
// was deleted upstream (one already on the appointment may stay).
type Store interface {
	// Appointments lists appointments ending after from (zero: all), in
	// start order; cancelled ones only when withCancelled.
	Appointments(ctx context.Context, q AppointmentQuery) ([]Appointment, error)
	Appointment(ctx context.Context, id int64) (Appointment, error)
	Create(ctx context.Context, in Input) (Appointment, error)
	Update(ctx context.Context, id, version int64, in Input) (Appointment, error)
	// Cancel marks the appointment cancelled (version 0 skips the check).
	Cancel(ctx context.Context, id, version int64) (Appointment, error)

	// Contacts lists the local copy in name order, deleted ones included.
	Contacts(ctx context.Context) ([]Contact, error)
	// FindContacts lists a page of the local copy in name order (any case),
	// deleted ones included: those whose name or email holds search (any
	// case; "" for all), limit of them from offset.
	FindContacts(ctx context.Context, search string, limit, offset int) ([]Contact, error)
	Contact(ctx context.Context, id int64) (Contact, error)

	// Notifications lists the notification requests of appointment id.
	Notifications(ctx context.Context, id int64) ([]OutboxEntry, error)
}

// AppointmentQuery selects appointments.
type AppointmentQuery struct {
	From          time.Time // ending after this; zero: any
	Participant   int64     // with this contact; 0: any
	WithCancelled bool
	Limit         int // 0: 1000
	Offset        int // skip this many first
}

// StaleError says a change was based on an old version.
type StaleError struct {
	Based   int64
	Current Appointment
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("appointment %d was changed meanwhile: it is at version %d, the change was based on version %d", e.Current.ID, e.Current.Version, e.Based)
}

// Is makes a StaleError match derrors.ErrConflict.
func (e *StaleError) Is(target error) bool { return target == derrors.ErrConflict }
