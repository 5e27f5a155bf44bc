package httpx

import (
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
