// Package httpx holds the HTTP plumbing every syndic service shares: serving
// with timeouts and graceful shutdown, JSON in and out, the one table from
// errors to status codes, request logging, security headers and access control.
package httpx

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// Sentinel errors. Wrap them with fmt.Errorf("...: %w", ErrX) and WriteError
// turns them into the matching status; anything else is a 500.
var (
	ErrInvalid            = errors.New("invalid")
	ErrNotFound           = errors.New("not found")
	ErrConflict           = errors.New("conflict")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrTooLarge           = errors.New("request body too large")
	ErrUnsupportedMedia   = errors.New("unsupported media type")
	ErrUnprocessable      = errors.New("unprocessable")
	ErrUnauthorized       = errors.New("unauthorized")
	ErrUnavailable        = errors.New("unavailable")
)

// statusOf is the one table from errors to HTTP status codes.
var statusOf = []struct {
	err    error
	status int
}{
	{ErrInvalid, http.StatusBadRequest},
	{ErrNotFound, http.StatusNotFound},
	{ErrPreconditionFailed, http.StatusPreconditionFailed}, // before ErrConflict: a stale If-Match wraps both
	{ErrConflict, http.StatusConflict},
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
	{ErrUnsupportedMedia, http.StatusUnsupportedMediaType},
	{ErrUnprocessable, http.StatusUnprocessableEntity},
	{ErrUnauthorized, http.StatusUnauthorized},
	{ErrUnavailable, http.StatusServiceUnavailable},
}

// Status returns the HTTP status code for err: the first sentinel in the
// table that err wraps, or 500.
func Status(err error) int {
	for _, e := range statusOf {
		if errors.Is(err, e.err) {
			return e.status
		}
	}
	return http.StatusInternalServerError
}

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

// Err returns p as an error, or nil when there are no problems.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return p
}

// ErrorBody is the JSON shape of every error answer.
type ErrorBody struct {
	Error    string            `json:"error"`
	Problems map[string]string `json:"problems,omitempty"`
}

// WriteError answers err as JSON with the status the table gives. A 500 is
// logged with its detail and answered only with "internal error".
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, body := ErrorResponse(r, log, err)
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="syndic", charset="UTF-8"`)
	}
	WriteJSON(w, status, body)
}

// ErrorResponse returns the status and body for err, logging server errors;
// HTML handlers use it to render the same message in a page.
func ErrorResponse(r *http.Request, log *slog.Logger, err error) (int, ErrorBody) {
	status := Status(err)
	if status == http.StatusServiceUnavailable {
		log.WarnContext(r.Context(), "request refused", "err", err, "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r.Context()))
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		log.ErrorContext(r.Context(), "request failed", "err", err, "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r.Context()))
		return status, ErrorBody{Error: "internal error"}
	}
	body := ErrorBody{Error: err.Error()}
	var p Problems
	if errors.As(err, &p) {
		body.Problems = p
	}
	return status, body
}
