package view

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"syndic/shared/derrors"
)

func TestSetHandle(t *testing.T) {
	fsys := fstest.MapFS{
		"t/layout.html": {Data: []byte(`{{define "service"}}Things{{end}}{{define "head"}}{{end}}{{define "nav"}}{{end}}{{define "footer"}}{{end}}{{define "back"}}Back to the things{{end}}`)},
		"t/show.html":   {Data: []byte(`{{define "title"}}Show{{end}}{{define "content"}}<p>{{.}}</p>{{end}}`)},
	}
	var logged bytes.Buffer
	s, err := Parse(slog.New(slog.NewJSONHandler(&logged, nil)), fsys, "t", Links{}, nil, "show")
	if err != nil {
		t.Fatal(err)
	}
	const notFound = "There is no such thing."

	t.Run("answered", func(t *testing.T) {
		h := s.Handle(notFound, func(w http.ResponseWriter, r *http.Request) error {
			s.Render(w, r, http.StatusBadRequest, "show", "the form again") // a form with problems is an answer, not an error
			return nil
		})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("status = %d, want %d", rec.Code, http.StatusBadRequest)
		}
		if !strings.Contains(rec.Body.String(), "<p>the form again</p>") {
			t.Errorf("body = %q, want the page", rec.Body)
		}
	})

	for _, tc := range []struct {
		name     string
		notFound string
		err      error
		status   int
		title    string
		message  string
		logged   bool
	}{
		{"not found", notFound, fmt.Errorf("thing 7: %w", derrors.ErrNotFound), 404, "Not found", "There is no such thing.", false},
		{"not found without a message", "", fmt.Errorf("thing 7: %w", derrors.ErrNotFound), 404, "Not Found", "thing 7: not found", false},
		{"invalid", notFound, fmt.Errorf("the form lacks the version: %w", derrors.ErrInvalid), 400, "Bad Request", "the form lacks the version: invalid", false},
		{"too large", notFound, fmt.Errorf("form over 10 bytes: %w", derrors.ErrTooLarge), 413, "Request Entity Too Large", "form over 10 bytes: request body too large", false},
		{"internal", notFound, errors.New("password=hunter2 leaked"), 500, "Internal Server Error", "internal error", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged.Reset()
			h := s.Handle(tc.notFound, func(w http.ResponseWriter, r *http.Request) error { return tc.err })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/things/7", nil))
			if rec.Code != tc.status {
				t.Fatalf("status = %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q, want HTML", got)
			}
			body := rec.Body.String()
			if !strings.Contains(body, "<title>"+tc.title) || !strings.Contains(body, "<p>"+tc.message+"</p>") {
				t.Errorf("body = %q, want the error page with title %q and message %q", body, tc.title, tc.message)
			}
			if strings.Contains(body, "hunter2") {
				t.Errorf("body = %q shows the 500's detail", body)
			}
			if got := strings.Contains(logged.String(), "hunter2"); got != tc.logged {
				t.Errorf("log %q: has the 500's detail = %v, want %v", logged.String(), got, tc.logged)
			}
		})
	}
}
