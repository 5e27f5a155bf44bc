package notifications

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"syndic/shared/config"
	"syndic/shared/servicetest"
	"syndic/shared/smtptest"
)

var ada = Request{To: "ada@example.org", Subject: "Tea on Friday", Text: "Hello Ada,\nsee you on Friday.\n"}

const validCalendar = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//syndic//test//EN\r\nMETHOD:REQUEST\r\n" +
	"BEGIN:VEVENT\r\nUID:tea-1@syndic.test\r\nDTSTAMP:20260101T100000Z\r\nDTSTART:20260102T150000Z\r\nSUMMARY:Tea\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// errorBody is the JSON shape of an error answer.
type errorBody struct {
	Error    string            `json:"error"`
	Problems map[string]string `json:"problems"`
}

func TestAccept(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{})
	with := func(f func(r *Request)) Request { r := ada; f(&r); return r }
	tooBig := fmt.Sprintf(`{"to":"ada@example.org","subject":"big","text":%q}`, strings.Repeat("x", 1<<20+1))

	for _, tc := range []struct {
		name        string
		body        any
		contentType string // application/json when empty
		key         string
		want        int
		problem     string // a field named in problems
	}{
		{name: "no key", body: ada, want: 400, problem: "Idempotency-Key"},
		{name: "key with a space", body: ada, key: "a b", want: 400, problem: "Idempotency-Key"},
		{name: "key too long", body: ada, key: strings.Repeat("k", MaxKey+1), want: 400, problem: "Idempotency-Key"},
		{name: "bad JSON", body: `{"to": "ada@example.org",`, key: "k-bad-json", want: 400, problem: "body"},
		{name: "unknown field", body: `{"to":"ada@example.org","subject":"s","text":"t","bcc":"eve@example.org"}`, key: "k-unknown", want: 400, problem: "body"},
		{name: "wrong type", body: `{"to":"ada@example.org","subject":7,"text":"t"}`, key: "k-type", want: 400, problem: "subject"},
		{name: "form body", body: "to=ada@example.org", contentType: "application/x-www-form-urlencoded", key: "k-form", want: 415},
		{name: "too large", body: tooBig, key: "k-big", want: 413},
		{name: "no to", body: with(func(r *Request) { r.To = "" }), key: "k-to-0", want: 400, problem: "to"},
		{name: "to not an address", body: with(func(r *Request) { r.To = "ada at example" }), key: "k-to-1", want: 400, problem: "to"},
		{name: "to with a name", body: with(func(r *Request) { r.To = "Ada <ada@example.org>" }), key: "k-to-2", want: 400, problem: "to"},
		{name: "to with a header", body: with(func(r *Request) { r.To = "ada@example.org\r\nBcc: eve@example.org" }), key: "k-to-3", want: 400, problem: "to"},
		{name: "two recipients", body: with(func(r *Request) { r.To = "ada@example.org, eve@example.org" }), key: "k-to-4", want: 400, problem: "to"},
		{name: "no subject", body: with(func(r *Request) { r.Subject = "" }), key: "k-subj-0", want: 400, problem: "subject"},
		{name: "subject with CRLF", body: with(func(r *Request) { r.Subject = "Hi\r\nBcc: eve@example.org" }), key: "k-subj-1", want: 400, problem: "subject"},
		{name: "subject with LF", body: with(func(r *Request) { r.Subject = "Hi\nBcc: eve@example.org" }), key: "k-subj-2", want: 400, problem: "subject"},
		{name: "subject too long", body: with(func(r *Request) { r.Subject = strings.Repeat("é", MaxSubject+1) }), key: "k-subj-3", want: 400, problem: "subject"},
		{name: "no text", body: with(func(r *Request) { r.Text = "" }), key: "k-text-0", want: 400, problem: "text"},
		{name: "text too long", body: with(func(r *Request) { r.Text = strings.Repeat("x", MaxText+1) }), key: "k-text-1", want: 400, problem: "text"},
		{name: "calendar not iCal", body: with(func(r *Request) { r.Calendar = "BEGIN:VCALENDAR\r\nthis is not\r\n" }), key: "k-cal-0", want: 400, problem: "calendar"},
		{name: "calendar a vCard", body: with(func(r *Request) { r.Calendar = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Ada\r\nEND:VCARD\r\n" }), key: "k-cal-1", want: 400, problem: "calendar"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := []string{}
			if tc.key != "" {
				header = append(header, "Idempotency-Key", tc.key)
			}
			if tc.contentType != "" {
				header = append(header, "Content-Type", tc.contentType)
			}
			status, body, h := s.do(t, "POST", "/api/notifications", tc.body, header...)
			if status != tc.want {
				t.Fatalf("status = %d, want %d: %s", status, tc.want, body)
			}
			if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want JSON", ct)
			}
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("error body %s: %v", body, err)
			}
			if tc.problem != "" && e.Problems[tc.problem] == "" {
				t.Errorf("problems = %v, want one for %s", e.Problems, tc.problem)
			}
		})
	}
	if got := s.list(t, ""); len(got) != 0 {
		t.Errorf("refused requests were stored: %+v", got)
	}

	t.Run("accepted", func(t *testing.T) {
		req := ada
		req.Calendar = validCalendar
		status, body, h := s.do(t, "POST", "/api/notifications", req, "Idempotency-Key", "k-ok")
		if status != http.StatusAccepted {
			t.Fatalf("status = %d, want 202: %s", status, body)
		}
		var n Notification
		if err := json.Unmarshal(body, &n); err != nil {
			t.Fatal(err)
		}
		if n.ID < 1 || n.IdempotencyKey != "k-ok" || n.To != req.To || n.Subject != req.Subject || n.Text != req.Text || n.Calendar != req.Calendar {
			t.Errorf("notification = %+v, want the request stored", n)
		}
		if n.Status == "" || n.CreatedAt.IsZero() {
			t.Errorf("notification = %+v, want a status and a creation time", n)
		}
		if want := fmt.Sprintf("/api/notifications/%d", n.ID); h.Get("Location") != want {
			t.Errorf("Location = %q, want %q", h.Get("Location"), want)
		}
	})
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := runService(t, Config{})
	first := s.accept(t, "invite-7-ada", ada)

	status, again := s.post(t, "invite-7-ada", ada)
	if status != http.StatusOK {
		t.Fatalf("same key, same body: status = %d, want 200", status)
	}
	if again.ID != first.ID {
		t.Errorf("same key, same body: id = %d, want %d", again.ID, first.ID)
	}

	other := ada
	other.Subject = "Coffee on Friday"
	st, body, _ := s.do(t, "POST", "/api/notifications", other, "Idempotency-Key", "invite-7-ada")
	if st != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body: status = %d, want 422: %s", st, body)
	}
	if n := s.get(t, first.ID); n.Subject != ada.Subject {
		t.Errorf("subject = %q after a refused reuse of the key, want %q", n.Subject, ada.Subject)
	}

	if second := s.accept(t, "invite-7-bob", ada); second.ID == first.ID {
		t.Errorf("another key got the same id %d", first.ID)
	}
	if got := s.list(t, ""); len(got) != 2 {
		t.Errorf("%d notifications, want 2", len(got))
	}
}

// TestListAndGet: one notification of each status, filtered by ?status=.
func TestListAndGet(t *testing.T) {
	t.Parallel()
	mx := smtptest.Start(t)
	// A retry waits an hour: a temporary failure leaves the notification pending.
	s := runService(t, Config{SMTPURL: mx.URL, RetryMin: time.Hour, RetryMax: time.Hour})

	sent := s.accept(t, "list-sent", Request{To: "sent@example.org", Subject: "sent", Text: "sent"})
	s.waitStatus(t, sent.ID, StatusSent, 10*time.Second)
	mx.Fail(550, "no such user")
	failed := s.accept(t, "list-failed", Request{To: "failed@example.org", Subject: "failed", Text: "failed"})
	s.waitStatus(t, failed.ID, StatusFailed, 10*time.Second)
	mx.Fail(451, "try later")
	pending := s.accept(t, "list-pending", Request{To: "pending@example.org", Subject: "pending", Text: "pending"})
	s.waitFor(t, pending.ID, 10*time.Second, "tried once", func(n Notification) bool { return n.Attempts == 1 })

	ids := func(ns []Notification) string {
		var b strings.Builder
		for _, n := range ns {
			fmt.Fprintf(&b, "%d ", n.ID)
		}
		return strings.TrimSpace(b.String())
	}
	for query, want := range map[string][]Notification{
		"":                 {pending, failed, sent}, // newest first
		"?status=pending":  {pending},
		"?status=sent":     {sent},
		"?status=failed":   {failed},
		"?limit=2":         {pending, failed},
		"?status=sent&x=1": {sent},
	} {
		if got := s.list(t, query); ids(got) != ids(want) {
			t.Errorf("GET /api/notifications%s = ids [%s], want [%s]", query, ids(got), ids(want))
		}
	}
	for _, query := range []string{"?status=lost", "?limit=0", "?limit=many", "?limit=1001"} {
		if status, body, _ := s.do(t, "GET", "/api/notifications"+query, nil); status != http.StatusBadRequest {
			t.Errorf("GET /api/notifications%s: status = %d, want 400: %s", query, status, body)
		}
	}

	n := s.get(t, pending.ID)
	if n.Status != StatusPending || n.Attempts != 1 || !strings.Contains(n.LastError, "451") || n.NextAttemptAt == nil || !n.NextAttemptAt.After(time.Now()) {
		t.Errorf("pending notification = %+v, want 1 attempt, the 451 and a next attempt later", n)
	}
	if n := s.get(t, sent.ID); n.SentAt == nil || n.LastError != "" || n.NextAttemptAt != nil {
		t.Errorf("sent notification = %+v, want sent_at and no error", n)
	}

	for _, path := range []string{"/api/notifications/9999", "/api/notifications/0", "/api/notifications/abc", "/api/nothing"} {
		status, body, _ := s.do(t, "GET", path, nil)
		var e errorBody
		if status != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e.Error == "" {
			t.Errorf("GET %s: status = %d, body %s, want a 404 JSON error", path, status, body)
		}
	}
}

func TestAccess(t *testing.T) {
	t.Parallel()
	t.Run("API_TOKEN", func(t *testing.T) {
		s := runService(t, Config{Common: commonWith("tok-1", "")})
		s.Token = "" // each request below says what it sends
		for _, tc := range []struct {
			method, path string
			auth         string
			want         int
		}{
			{"GET", "/api/notifications", "", 401},
			{"GET", "/api/notifications", "Bearer wrong", 401},
			{"GET", "/api/notifications", "Bearer tok-1", 200},
			{"POST", "/api/notifications", "", 401},
			{"GET", "/api/notifications/1", "", 401},
			{"GET", "/metrics", "", 401},
			{"GET", "/metrics", "Bearer tok-1", 200},
			{"GET", "/healthz", "", 200},
			{"GET", "/readyz", "", 200},
			{"GET", "/", "", 200}, // no UI_PASSWORD: the page is open
		} {
			var body any
			if tc.method == "POST" {
				body = ada
			}
			header := []string{"Idempotency-Key", "access-1"}
			if tc.auth != "" {
				header = append(header, "Authorization", tc.auth)
			}
			if status, _, _ := s.do(t, tc.method, tc.path, body, header...); status != tc.want {
				t.Errorf("%s %s with %q: status = %d, want %d", tc.method, tc.path, tc.auth, status, tc.want)
			}
		}
		s.Token = "tok-1"
		if got := s.list(t, ""); len(got) != 0 {
			t.Errorf("a POST without the token was stored: %+v", got)
		}
	})
	t.Run("UI_PASSWORD", func(t *testing.T) {
		s := runService(t, Config{Common: commonWith("tok-2", "pw-2")})
		s.Token = ""
		basic := func(user, pass string) string {
			r, _ := http.NewRequest("GET", "/", nil)
			r.SetBasicAuth(user, pass)
			return r.Header.Get("Authorization")
		}
		for _, tc := range []struct {
			path, auth string
			want       int
		}{
			{"/", "", 401},
			{"/", basic("admin", "wrong"), 401},
			{"/", basic("admin", "pw-2"), 200},
			{"/", "Bearer tok-2", 200},
			{"/api/notifications", basic("admin", "pw-2"), 200},
			{"/api/notifications", "", 401},
		} {
			header := []string{}
			if tc.auth != "" {
				header = append(header, "Authorization", tc.auth)
			}
			if status, _, _ := s.do(t, "GET", tc.path, nil, header...); status != tc.want {
				t.Errorf("GET %s with %q: status = %d, want %d", tc.path, tc.auth, status, tc.want)
			}
		}
	})
}

func commonWith(token, password string) (c config.Common) {
	c.APIToken, c.UIPassword = token, password
	return c
}

func TestMainHelp(t *testing.T) {
	t.Parallel()
	servicetest.CheckHelp(t, Main, "PORT", "DATABASE_URL", "SMTP_URL", "SMTP_IDLE_CLOSE", "MAIL_FROM", "DELIVERY_WORKERS", "MAX_ATTEMPTS",
		"RETRY_MIN", "RETRY_MAX", "BREAKER_FAILURES", "BREAKER_OPEN_FOR", "BASE_URL", "LOG_LEVEL", "API_TOKEN", "UI_USER", "UI_PASSWORD")
}

// TestMainRefusesBadValues: a bad value stops the service at start with a
// message naming the variable.
func TestMainRefusesBadValues(t *testing.T) {
	servicetest.CheckRefuses(t, Main, [][2]string{
		{"SMTP_URL", "http://x"}, {"SMTP_URL", "smtp://"}, {"MAIL_FROM", "nope"},
		{"BREAKER_OPEN_FOR", "-1s"}, {"BREAKER_OPEN_FOR", "soon"}, {"BREAKER_FAILURES", "0"},
		{"MAX_ATTEMPTS", "0"}, {"DELIVERY_WORKERS", "0"}, {"SMTP_IDLE_CLOSE", "0s"}, {"RETRY_MIN", "0s"},
		{"RETRY_MAX", "1ms"}, // below RETRY_MIN's default
		{"PORT", "http"}, {"DATABASE_URL", "mysql://localhost/x"}, {"LOG_LEVEL", "chatty"}, {"BASE_URL", "not a url"},
	}...)
}
