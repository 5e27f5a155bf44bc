package calendar

import "time"

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
