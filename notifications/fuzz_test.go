package notifications

import (
	"errors"
	"mime"
	"net/http/httptest"
	"net/mail"
	"strings"
	"testing"
	"time"

	"syndic/shared/derrors"
	"syndic/shared/httpx"
)

// FuzzRequest: any body either gets a clear client error or is a request
// whose mail builds and parses back with the same subject and recipient —
// no header injection, whatever the subject holds.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"to":"ada@example.org","subject":"Hello","text":"Hi"}`), "key-1")
	f.Add([]byte(`{"to":"ada@example.org","subject":"Bcc: x@y.z","text":"Hi"}`), "k")
	f.Add([]byte(`{"to":"ada@example.org\r\nBcc: x@y.z","subject":"s","text":"t"}`), "k")
	f.Add([]byte(`{"to":"ada@example.org","subject":"Zoë 🎉","text":"x","calendar":"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"}`), "")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		r := httptest.NewRequest("POST", "/api/notifications", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		key, req, err := decodeRequest(r)
		if err != nil {
			var p derrors.Problems
			if s := httpx.Status(err); s != 413 && (s != 400 || !errors.As(err, &p)) {
				t.Fatalf("error %v answers %d", err, s)
			}
			return
		}
		m, err := BuildMessage("syndic <noreply@syndic.test>", Notification{IdempotencyKey: key, To: req.To, Subject: req.Subject, Text: req.Text, Calendar: req.Calendar}, time.Unix(0, 0))
		if err != nil {
			t.Fatalf("valid request does not build: %v", err)
		}
		msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
		if err != nil {
			t.Fatalf("mail does not parse: %v", err)
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil || subject != req.Subject {
			t.Fatalf("subject %q came back as %q (%v)", req.Subject, subject, err)
		}
		to, err := mail.ParseAddress(msg.Header.Get("To"))
		if err != nil || to.Address != req.To || len(msg.Header["To"]) != 1 || len(msg.Header["Bcc"]) != 0 {
			t.Fatalf("recipient %q came back as %v (%v), header %v", req.To, to, err, msg.Header)
		}
	})
}
