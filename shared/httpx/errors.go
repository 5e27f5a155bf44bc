// Package httpx holds the HTTP plumbing every syndic service shares: serving
// with timeouts and graceful shutdown, JSON in and out, the one table from
// errors (package derrors) to status codes, request logging, security
// headers and access control.
package httpx

import (
	"errors"
	"log/slog"
	"net/http"

	"syndic/shared/derrors"
)

// statusOf is the one table from errors to HTTP status codes.
var statusOf = []struct {
	err    error
	status int
}{
	{derrors.ErrInvalid, http.StatusBadRequest},
	{derrors.ErrNotFound, http.StatusNotFound},
	{derrors.ErrMethodNotAllowed, http.StatusMethodNotAllowed},
	{derrors.ErrPreconditionFailed, http.StatusPreconditionFailed}, // before ErrConflict: a stale If-Match wraps both
	{derrors.ErrConflict, http.StatusConflict},
	{derrors.ErrTooLarge, http.StatusRequestEntityTooLarge},
	{derrors.ErrUnsupportedMedia, http.StatusUnsupportedMediaType},
	{derrors.ErrUnprocessable, http.StatusUnprocessableEntity},
	{derrors.ErrUnauthorized, http.StatusUnauthorized},
	{derrors.ErrUnavailable, http.StatusServiceUnavailable},
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
	var p derrors.Problems
	if errors.As(err, &p) {
		body.Problems = p
	}
	return status, body
}
