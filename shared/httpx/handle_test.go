package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"syndic/shared/derrors"
)

func TestHandle(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logged, nil))

	t.Run("answered", func(t *testing.T) {
		h := Handle(log, func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("ETag", `"3"`)
			WriteJSON(w, http.StatusCreated, map[string]string{"name": "Ada"})
			return nil
		})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
		if rec.Code != http.StatusCreated {
			t.Fatalf("status = %d, want %d", rec.Code, http.StatusCreated)
		}
		if got := rec.Header().Get("ETag"); got != `"3"` {
			t.Errorf("ETag = %q, want %q", got, `"3"`)
		}
		if got, want := rec.Body.String(), `{"name":"Ada"}`+"\n"; got != want {
			t.Errorf("body = %q, want %q", got, want)
		}
	})

	for _, tc := range []struct {
		name   string
		err    error
		status int
		body   ErrorBody
		logged bool
	}{
		{"not found", fmt.Errorf("contact 7: %w", derrors.ErrNotFound), 404, ErrorBody{Error: "contact 7: not found"}, false},
		{"problems", derrors.Problems{"email": "is required"}, 400, ErrorBody{Error: "invalid email: is required", Problems: map[string]string{"email": "is required"}}, false},
		{"stale If-Match", StaleAs(fmt.Errorf("version 2: %w", derrors.ErrConflict), true), 412, ErrorBody{Error: "version 2: conflict: precondition failed"}, false},
		{"internal", errors.New("password=hunter2 leaked"), 500, ErrorBody{Error: "internal error"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logged.Reset()
			h := Handle(log, func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Cache-Control", "no-store") // set, but nothing written
				return tc.err
			})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
			if rec.Code != tc.status {
				t.Fatalf("status = %d, want %d", rec.Code, tc.status)
			}
			if got := rec.Header().Get("Content-Type"); got != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q, want JSON", got)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want the handler's no-store kept", got)
			}
			var body ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Error != tc.body.Error || fmt.Sprint(body.Problems) != fmt.Sprint(tc.body.Problems) {
				t.Errorf("body = %+v, want %+v", body, tc.body)
			}
			if got := strings.Contains(logged.String(), "request failed"); got != tc.logged {
				t.Errorf("logged %q, want logged = %v", logged.String(), tc.logged)
			}
			if tc.logged && !strings.Contains(logged.String(), "hunter2") {
				t.Errorf("log %q lacks the detail of the 500", logged.String())
			}
		})
	}

	t.Run("unauthorized", func(t *testing.T) {
		h := Handle(log, func(w http.ResponseWriter, r *http.Request) error {
			return fmt.Errorf("token: %w", derrors.ErrUnauthorized)
		})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") == "" {
			t.Fatalf("status = %d, WWW-Authenticate = %q; want 401 with a challenge", rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	})
}
