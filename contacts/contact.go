// Package contacts is the contacts service: people (name, email, phone) in
// HTML and JSON, and every change published as an Atom feed with RFC 5005
// archives. A change and its event are written in one transaction (a
// transactional outbox), so the feed is the exact history of the table.
package contacts

import (
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"syndic/shared/derrors"
)

// Contact is a person.
type Contact struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Phone     string    `json:"phone"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Input is what a client may set on a contact.
type Input struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Phone string `json:"phone"`
}

// Limits on the fields.
const (
	MaxName  = 200
	MaxEmail = 254
	MaxPhone = 40
)

// Normalize trims surrounding space from every field.
func (in Input) Normalize() Input {
	return Input{Name: strings.TrimSpace(in.Name), Email: strings.TrimSpace(in.Email), Phone: strings.TrimSpace(in.Phone)}
}

// Validate returns derrors.Problems naming each field that is wrong, or nil.
func (in Input) Validate() error {
	p := derrors.Problems{}
	p.Text("name", in.Name, true, MaxName)
	switch {
	case in.Email == "":
		p.Add("email", "is required")
	case len(in.Email) > MaxEmail:
		p.Add("email", fmt.Sprintf("must be at most %d bytes", MaxEmail))
	case derrors.BadText(in.Email) != "":
		p.Add("email", derrors.BadText(in.Email))
	case !validEmail(in.Email):
		p.Add("email", "is not a valid email address (like ada@example.org)")
	}
	if utf8.RuneCountInString(in.Phone) > MaxPhone {
		p.Add("phone", fmt.Sprintf("must be at most %d characters", MaxPhone))
	}
	for _, r := range in.Phone {
		if !(r >= '0' && r <= '9' || strings.ContainsRune(" +-().#*/", r)) {
			p.Add("phone", "may hold only digits, spaces and + - ( ) . # * /")
			break
		}
	}
	return p.Err()
}

// validEmail accepts a bare address (no display name) whose domain has a dot.
func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return false
	}
	domain := s[strings.LastIndexByte(s, '@')+1:]
	return strings.Contains(domain, ".") && !strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".")
}

// apply returns c with in's fields.
func (c Contact) apply(in Input) Contact {
	c.Name, c.Email, c.Phone = in.Name, in.Email, in.Phone
	return c
}
