package httpx

import (
	"log/slog"
	"net/http"
)

// Handle adapts fn, an HTTP handler that returns its error instead of
// answering it, to an http.Handler. A nil error means fn has answered; a
// non-nil one is answered with WriteError (the status from the error table,
// a 500 logged to log and answered only with "internal error"). fn returns
// an error only before it has written anything: headers it has set stay, so
// a WWW-Authenticate it chose is kept.
func Handle(log *slog.Logger, fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			WriteError(w, r, log, err)
		}
	})
}
