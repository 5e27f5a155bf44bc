package notifications

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

// Message is a mail ready to send.
type Message struct {
	From, To  string
	MessageID string
	Data      []byte // RFC 5322, CRLF line ends
}

// BuildMessage writes n as a MIME mail from from: a text/plain body and,
// when n carries a calendar, a text/calendar part (with the METHOD the
// calendar names) so mail clients show an invitation. The Message-ID is
// derived from the Idempotency-Key, so a resent mail can be recognised.
func BuildMessage(from string, n Notification, now time.Time) (Message, error) {
	fromAddr, err := mail.ParseAddress(from)
	if err != nil {
		return Message{}, fmt.Errorf("MAIL_FROM %q: %w", from, err)
	}
	sum := sha256.Sum256([]byte(n.IdempotencyKey))
	domain := fromAddr.Address[strings.LastIndexByte(fromAddr.Address, '@')+1:]
	msgID := "<" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"

	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", fromAddr.String())
	h("To", (&mail.Address{Address: n.To}).String())
	h("Subject", mime.QEncoding.Encode("utf-8", n.Subject))
	h("Date", now.UTC().Format(time.RFC1123Z))
	h("Message-ID", msgID)
	h("MIME-Version", "1.0")
	if n.Calendar == "" {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, n.Text); err != nil {
			return Message{}, err
		}
		return Message{From: fromAddr.Address, To: n.To, MessageID: msgID, Data: b.Bytes()}, nil
	}
	method := "PUBLISH"
	if cal, err := ical.NewDecoder(strings.NewReader(n.Calendar)).Decode(); err == nil {
		if m := cal.Props.Get(ical.PropMethod); m != nil && m.Value != "" {
			method = strings.ToUpper(m.Value)
		}
	}
	mw := multipart.NewWriter(&b)
	h("Content-Type", `multipart/alternative; boundary="`+mw.Boundary()+`"`)
	b.WriteString("\r\n")
	parts := []struct{ ctype, body string }{
		{"text/plain; charset=utf-8", n.Text},
		{"text/calendar; charset=utf-8; method=" + method, n.Calendar},
	}
	for _, p := range parts {
		w, err := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {p.ctype}, "Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return Message{}, err
		}
		if err := writeQP(w, p.body); err != nil {
			return Message{}, err
		}
	}
	if err := mw.Close(); err != nil {
		return Message{}, err
	}
	return Message{From: fromAddr.Address, To: n.To, MessageID: msgID, Data: b.Bytes()}, nil
}

func writeQP(w interface{ Write([]byte) (int, error) }, s string) error {
	qp := quotedprintable.NewWriter(w)
	if _, err := qp.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n"))); err != nil {
		return err
	}
	return qp.Close()
}
