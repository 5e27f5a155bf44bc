package httpx

import (
	"bytes"
	"crypto/tls"
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

func TestStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", derrors.ErrNotFound), 404},
		{derrors.Problems{"name": "is required"}, 400},
		{fmt.Errorf("x: %w: %w", derrors.ErrConflict, derrors.ErrPreconditionFailed), 412},
		{fmt.Errorf("x: %w", derrors.ErrConflict), 409},
		{fmt.Errorf("x: %w", derrors.ErrTooLarge), 413},
		{fmt.Errorf("x: %w", derrors.ErrUnsupportedMedia), 415},
		{fmt.Errorf("x: %w", derrors.ErrUnavailable), 503},
		{errors.New("disk on fire"), 500},
	} {
		if got := Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestWriteErrorHidesInternals(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest("GET", "/", nil), slog.New(slog.DiscardHandler), errors.New("password=hunter2 leaked"))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "hunter2") {
		t.Fatalf("500 answer: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	WriteError(rec, httptest.NewRequest("GET", "/", nil), slog.New(slog.DiscardHandler), derrors.Problems{"email": "is required"})
	var body ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != 400 || body.Problems["email"] != "is required" {
		t.Fatalf("400 answer: %d %s", rec.Code, rec.Body)
	}
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	type in struct {
		Name string `json:"name"`
		Age  int    `json:"age"`
	}
	for _, tc := range []struct {
		ct, body string
		want     error
	}{
		{"application/json", `{"name":"a","age":3}`, nil},
		{"application/json; charset=utf-8", `{"name":"a"}`, nil},
		{"text/plain", `{}`, derrors.ErrUnsupportedMedia},
		{"", `{}`, derrors.ErrUnsupportedMedia},
		{"application/json", `{"name":`, derrors.ErrInvalid},
		{"application/json", `{"age":"x"}`, derrors.ErrInvalid},
		{"application/json", `{"nick":"x"}`, derrors.ErrInvalid},
		{"application/json", `{} {}`, derrors.ErrInvalid},
		{"application/json", ``, derrors.ErrInvalid},
		{"application/json", `{"name":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, derrors.ErrTooLarge},
	} {
		r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", tc.ct)
		var v in
		err := DecodeJSON(r, &v)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s %.40q: err = %v, want %v", tc.ct, tc.body, err, tc.want)
		}
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest("GET", "http://internal:8081/feed", nil)
	if got := BaseURL("https://contacts.example.org", r); got != "https://contacts.example.org" {
		t.Errorf("configured: %q", got)
	}
	if got := BaseURL("", r); got != "http://internal:8081" {
		t.Errorf("from request: %q", got)
	}
	r.Header.Set("X-Forwarded-Proto", "https, http")
	r.Header.Set("X-Forwarded-Host", "contacts.example.org")
	if got := BaseURL("", r); got != "https://contacts.example.org" {
		t.Errorf("forwarded: %q", got)
	}
	r.Header.Set("X-Forwarded-Host", "evil.org/path")
	r.Header.Set("X-Forwarded-Proto", "javascript")
	if got := BaseURL("", r); got != "http://internal:8081" {
		t.Errorf("malformed forwarded headers: %q", got)
	}
	r.TLS = &tls.ConnectionState{}
	r.Header.Del("X-Forwarded-Proto")
	if got := BaseURL("", r); !strings.HasPrefix(got, "https://") {
		t.Errorf("TLS: %q", got)
	}
}

func TestAccess(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	a := Access{Token: "tok", User: "admin", Password: "pw"}
	for _, tc := range []struct {
		h    http.Handler
		set  func(*http.Request)
		want int
	}{
		{a.Machine(ok), func(r *http.Request) {}, 401},
		{a.Machine(ok), func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, 200},
		{a.Machine(ok), func(r *http.Request) { r.Header.Set("Authorization", "Bearer tokx") }, 401},
		{a.Machine(ok), func(r *http.Request) { r.SetBasicAuth("admin", "pw") }, 200},
		{a.People(ok), func(r *http.Request) {}, 401},
		{a.People(ok), func(r *http.Request) { r.SetBasicAuth("admin", "pw") }, 200},
		{Access{}.Machine(ok), func(r *http.Request) {}, 200},
		{Access{Token: "tok"}.People(ok), func(r *http.Request) {}, 200},
		{Access{Token: "tok"}.Machine(ok), func(r *http.Request) { r.SetBasicAuth("admin", "") }, 401},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		tc.set(r)
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("%v: status %d, want %d", r.Header, rec.Code, tc.want)
		}
	}
}

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

func TestCheckUpdate(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	other := fmt.Errorf("content type: %w", derrors.ErrUnsupportedMedia)
	for _, tc := range []struct {
		name        string
		ifMatch     string
		bodyID      *int64
		bodyVersion *int64
		fieldErr    error
		version     int64
		fromIfMatch bool
		problems    derrors.Problems
		err         error
	}{
		{name: "body version", bodyID: n(7), bodyVersion: n(3), version: 3},
		{name: "If-Match wins", ifMatch: `W/"4"`, bodyVersion: n(3), version: 4, fromIfMatch: true},
		{name: "no version", problems: derrors.Problems{"version": `is required: the version this change is based on (or an If-Match header)`}},
		{name: "other id", bodyID: n(8), bodyVersion: n(3), version: 3, problems: derrors.Problems{"id": "is 8 in the body but 7 in the URL"}},
		{name: "bad If-Match", ifMatch: "x", bodyVersion: n(3), fromIfMatch: true, problems: derrors.Problems{"version": `If-Match "x" is not a version ETag like "3"`}},
		{name: "field problems kept", bodyVersion: n(0), fieldErr: derrors.Problems{"name": "is required"}, problems: derrors.Problems{"name": "is required", "version": "must be 1 or more"}},
		{name: "other error as it is", bodyVersion: n(3), fieldErr: other, err: other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "/things/7", nil)
			if tc.ifMatch != "" {
				r.Header.Set("If-Match", tc.ifMatch)
			}
			version, ifMatch, err := CheckUpdate(r, 7, tc.bodyID, tc.bodyVersion, tc.fieldErr)
			if tc.err != nil {
				if err != tc.err {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if version != tc.version || ifMatch != tc.fromIfMatch {
				t.Errorf("version, ifMatch = %d, %v; want %d, %v", version, ifMatch, tc.version, tc.fromIfMatch)
			}
			if tc.problems == nil {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var p derrors.Problems
			if !errors.As(err, &p) || fmt.Sprint(p) != fmt.Sprint(tc.problems) {
				t.Errorf("err = %v, want %v", err, tc.problems)
			}
		})
	}
}

func TestIfMatchVersion(t *testing.T) {
	for _, tc := range []struct {
		ifMatch string
		version int64
		problem string
	}{
		{"", 0, ""},
		{`"5"`, 5, ""},
		{`W/"5"`, 5, ""},
		{"five", 0, `If-Match "five" is not a version ETag like "3"`},
	} {
		r := httptest.NewRequest("DELETE", "/things/7", nil)
		if tc.ifMatch != "" {
			r.Header.Set("If-Match", tc.ifMatch)
		}
		version, err := IfMatchVersion(r)
		var p derrors.Problems
		switch {
		case tc.problem == "" && (err != nil || version != tc.version):
			t.Errorf("If-Match %q: %d, %v; want %d, nil", tc.ifMatch, version, err, tc.version)
		case tc.problem != "" && (!errors.As(err, &p) || p["If-Match"] != tc.problem):
			t.Errorf("If-Match %q: err = %v, want If-Match problem %q", tc.ifMatch, err, tc.problem)
		}
	}
}
