// Package notifications is the notifications service: it accepts mail
// requests with an Idempotency-Key, stores them before answering, and
// delivers each exactly once by SMTP (or to stdout when no SMTP server is
// configured), retrying temporary failures behind a circuit breaker.
package notifications

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"syndic/shared/derrors"

	"github.com/emersion/go-ical"
)

// Notification is one mail to send.
type Notification struct {
	ID             int64      `json:"id"`
	IdempotencyKey string     `json:"idempotency_key"`
	To             string     `json:"to"`
	Subject        string     `json:"subject"`
	Text           string     `json:"text"`
	Calendar       string     `json:"calendar,omitempty"`
	Status         string     `json:"status"` // pending, sent or failed
	Attempts       int        `json:"attempts"`
	LastError      string     `json:"last_error,omitempty"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	SentAt         *time.Time `json:"sent_at,omitempty"`
}

// Statuses.
const (
	StatusPending = "pending"
	StatusSent    = "sent"
	StatusFailed  = "failed"
)

// Request is the body of POST /api/notifications.
type Request struct {
	To       string `json:"to"`
	Subject  string `json:"subject"`
	Text     string `json:"text"`
	Calendar string `json:"calendar"` // optional iCal body, sent as a text/calendar part
}

// Limits.
const (
	MaxSubject = 200
	MaxText    = 256 << 10
	MaxKey     = 200
)

// Normalize trims the space around the address and the subject: a mail
// header cannot keep it (readers trim it), so it is not stored either.
func (r Request) Normalize() Request {
	r.To, r.Subject = strings.TrimSpace(r.To), strings.TrimSpace(r.Subject)
	return r
}

// Validate returns derrors.Problems for each wrong field, or nil.
func (r Request) Validate() error {
	p := derrors.Problems{}
	if a, err := mail.ParseAddress(r.To); r.To == "" {
		p.Add("to", "is required")
	} else if err != nil || a.Address != r.To || strings.ContainsAny(r.To, "\r\n") {
		p.Add("to", "is not a valid email address (like ada@example.org)")
	}
	switch n := utf8.RuneCountInString(r.Subject); {
	case n == 0:
		p.Add("subject", "is required")
	case n > MaxSubject:
		p.Add("subject", fmt.Sprintf("must be at most %d characters", MaxSubject))
	}
	for _, c := range r.Subject {
		if unicode.IsControl(c) {
			p.Add("subject", "must not contain control characters or line breaks")
			break
		}
	}
	if r.Text == "" {
		p.Add("text", "is required")
	} else if len(r.Text) > MaxText {
		p.Add("text", fmt.Sprintf("must be at most %d bytes", MaxText))
	}
	if !utf8.ValidString(r.Text) || !utf8.ValidString(r.Subject) {
		p.Add("text", "must be valid UTF-8")
	}
	if r.Calendar != "" {
		if len(r.Calendar) > MaxText {
			p.Add("calendar", fmt.Sprintf("must be at most %d bytes", MaxText))
		} else if _, err := ical.NewDecoder(strings.NewReader(r.Calendar)).Decode(); err != nil {
			p.Add("calendar", "is not an iCalendar (RFC 5545) object: "+err.Error())
		}
	}
	return p.Err()
}

// Hash identifies a request's content: the same Idempotency-Key with a
// different hash is refused.
func (r Request) Hash() string {
	var b bytes.Buffer
	json.NewEncoder(&b).Encode(r) // fixed field order: a canonical form
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:])
}

// ValidKey checks an Idempotency-Key header value.
func ValidKey(key string) error {
	if key == "" {
		return derrors.Problems{"Idempotency-Key": "header is required: a unique key per notification, reused on retries"}
	}
	if len(key) > MaxKey {
		return derrors.Problems{"Idempotency-Key": fmt.Sprintf("must be at most %d bytes", MaxKey)}
	}
	for _, c := range key {
		if c < 0x21 || c > 0x7e {
			return derrors.Problems{"Idempotency-Key": "must be printable ASCII without spaces"}
		}
	}
	return nil
}

// About is what a notification with an iCal part is about, for a person
// reading the list.
type About struct {
	Kind string // "invitation", "change", "cancellation"; "" for a plain mail
	Link string // the event's URL, when the iCal part has one
}

// About reads the iCal part: METHOD:CANCEL is a cancellation, a REQUEST
// is an invitation at SEQUENCE 0 and a change after (RFC 5546).
func (n Notification) About() About {
	if n.Calendar == "" {
		return About{}
	}
	cal, err := ical.NewDecoder(strings.NewReader(n.Calendar)).Decode()
	if err != nil {
		return About{Kind: "calendar"}
	}
	a := About{Kind: "invitation"}
	var seq int
	for _, ev := range cal.Events() {
		if p := ev.Props.Get(ical.PropURL); p != nil {
			a.Link = p.Value
		}
		if p := ev.Props.Get(ical.PropSequence); p != nil {
			seq, _ = strconv.Atoi(p.Value)
		}
	}
	switch m := cal.Props.Get(ical.PropMethod); {
	case m != nil && strings.EqualFold(m.Value, "CANCEL"):
		a.Kind = "cancellation"
	case seq > 0:
		a.Kind = "change"
	}
	if u, err := url.Parse(a.Link); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		a.Link = "" // only web links become links in a page
	}
	return a
}
