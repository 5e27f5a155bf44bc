package view

import "net/http"

// Handle adapts fn, a page handler that returns its error instead of
// answering it, to an http.Handler. A nil error means fn has answered (a
// page, a redirect, or a form rendered again with its problems); a non-nil
// one is answered as the error page by Error, with notFound as the message
// of a 404 when not empty. fn returns an error only before it has written
// anything.
func (s *Set) Handle(notFound string, fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			s.Error(w, r, err, notFound)
		}
	})
}
