// Package derrors holds the errors that mean "not found", "invalid",
// "conflict" and the like, so that stores and domain code can say them
// without knowing about HTTP. Wrap a sentinel with fmt.Errorf("...: %w",
// derrors.ErrX); httpx keeps the one table from these to status codes.
package derrors

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sentinel errors.
var (
	ErrInvalid            = errors.New("invalid")
	ErrNotFound           = errors.New("not found")
	ErrMethodNotAllowed   = errors.New("method not allowed")
	ErrConflict           = errors.New("conflict")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrTooLarge           = errors.New("request body too large")
	ErrUnsupportedMedia   = errors.New("unsupported media type")
	ErrUnprocessable      = errors.New("unprocessable")
	ErrUnauthorized       = errors.New("unauthorized")
	ErrUnavailable        = errors.New("unavailable")
)

// Problems maps a field name to what is wrong with it. As an error it wraps
// ErrInvalid, so it answers 400 and its fields are shown beside the inputs.
type Problems map[string]string

// Error lists the problems in field order.
func (p Problems) Error() string {
	var b strings.Builder
	b.WriteString("invalid ")
	for i, k := range slices.Sorted(maps.Keys(p)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", k, p[k])
	}
	return b.String()
}

// Is makes errors.Is(p, ErrInvalid) true.
func (p Problems) Is(target error) bool { return target == ErrInvalid }

// Add records a problem with field, keeping the first one reported.
func (p Problems) Add(field, why string) {
	if _, ok := p[field]; !ok {
		p[field] = why
	}
}

// Text checks a text field: present when required, at most max
// characters, and storable (see BadText).
func (p Problems) Text(field, s string, required bool, max int) {
	switch n := utf8.RuneCountInString(s); {
	case n == 0 && required:
		p.Add(field, "is required")
	case n > max:
		p.Add(field, fmt.Sprintf("must be at most %d characters, not %d", max, n))
	case n > 0 && !Visible(s):
		p.Add(field, "must contain a visible character (letters, digits, punctuation or symbols), not only spaces or invisible ones")
	}
	if why := BadText(s); why != "" {
		p.Add(field, why)
	}
}

// Visible reports whether s holds a character a person can see: a letter,
// digit, punctuation or symbol — not only spaces, zero-width characters or
// combining marks.
func Visible(s string) bool {
	for _, r := range s {
		if unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S) {
			return true
		}
	}
	return false
}

func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return p
}

// BadText explains why s cannot be stored as text — invalid UTF-8, a
// control character (line breaks included), a Unicode noncharacter or a
// bidirectional control (U+202A–U+202E, U+2066–U+2069) — or returns ""
// when it can. The first three break XML, iCal and mail headers; the last
// makes a name read differently from what it is.
func BadText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return fmt.Sprintf("must not contain control characters (found U+%04X)", r)
		case r == 0xFFFE || r == 0xFFFF || r >= 0xFDD0 && r <= 0xFDEF:
			return fmt.Sprintf("must not contain the noncharacter U+%04X", r)
		case r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069:
			return fmt.Sprintf("must not contain the bidirectional control U+%04X (it can make text read in another order, like \"gnp.exe\" shown as \"exe.png\")", r)
		}
	}
	return ""
}
