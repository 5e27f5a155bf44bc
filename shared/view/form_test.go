package view

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"syndic/shared/derrors"
)

func TestParseForm(t *testing.T) {
	post := func(body string, limit int64) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if limit > 0 {
			r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, limit)
		}
		return r
	}

	t.Run("ok", func(t *testing.T) {
		r := post("name=Ada&email=ada%40example.org", 0)
		if err := ParseForm(r); err != nil {
			t.Fatal(err)
		}
		if got := r.PostFormValue("email"); got != "ada@example.org" {
			t.Errorf("email = %q, want ada@example.org", got)
		}
	})
	t.Run("too large", func(t *testing.T) {
		err := ParseForm(post("name="+strings.Repeat("a", 100), 10))
		if !errors.Is(err, derrors.ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
		if !strings.HasPrefix(err.Error(), "form over 10 bytes: ") {
			t.Errorf("err = %q, want it to start with %q", err, "form over 10 bytes: ")
		}
	})
	t.Run("malformed", func(t *testing.T) {
		err := ParseForm(post("name=%zz", 0))
		if !errors.Is(err, derrors.ErrInvalid) || errors.Is(err, derrors.ErrTooLarge) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
		if !strings.HasPrefix(err.Error(), "form: ") {
			t.Errorf("err = %q, want it to start with %q", err, "form: ")
		}
	})
}
