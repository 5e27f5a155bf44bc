package notifications

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"syndic/shared/smtptest"
	"syndic/shared/sqldb/sqldbtest"
)

// lf turns CRLF line ends into LF.
func lf(b []byte) string { return strings.ReplaceAll(string(b), "\r\n", "\n") }

// invitation returns an iCalendar REQUEST with one event.
func invitation(t testing.TB, uid, summary string) string {
	t.Helper()
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, "-//syndic//notifications test//EN")
	cal.Props.SetText(ical.PropMethod, "REQUEST")
	ev := ical.NewEvent()
	ev.Props.SetText(ical.PropUID, uid)
	ev.Props.SetDateTime(ical.PropDateTimeStamp, time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	ev.Props.SetDateTime(ical.PropDateTimeStart, time.Date(2026, 3, 12, 15, 0, 0, 0, time.UTC))
	ev.Props.SetDateTime(ical.PropDateTimeEnd, time.Date(2026, 3, 12, 16, 30, 0, 0, time.UTC))
	ev.Props.SetText(ical.PropSummary, summary)
	ev.Props.SetText(ical.PropLocation, "Café Øresund, Room 2")
	cal.Children = append(cal.Children, ev.Component)
	var b bytes.Buffer
	if err := ical.NewEncoder(&b).Encode(cal); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// mailByTo returns the one mail to addr, failing t unless there is exactly one.
func mailByTo(t testing.TB, mails []smtptest.Mail, addr string) smtptest.Mail {
	t.Helper()
	var found []smtptest.Mail
	for _, m := range mails {
		if len(m.To) == 1 && m.To[0] == addr {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d mails to %s, want 1", len(found), addr)
	}
	return found[0]
}

// checkHeader checks what every mail carries and returns its decoded subject.
func checkHeader(t testing.TB, m smtptest.Mail, to string) string {
	t.Helper()
	if m.Header == nil {
		t.Fatalf("mail to %s does not parse:\n%s", to, m.Data)
	}
	if m.From != "noreply@syndic.test" {
		t.Errorf("MAIL FROM = %q, want noreply@syndic.test", m.From)
	}
	if from, err := m.Header.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "noreply@syndic.test" {
		t.Errorf("From: %q (%v), want syndic <noreply@syndic.test>", m.Header.Get("From"), err)
	}
	if rcpt, err := m.Header.AddressList("To"); err != nil || len(rcpt) != 1 || rcpt[0].Address != to {
		t.Errorf("To: %q (%v), want %s", m.Header.Get("To"), err, to)
	}
	if id := m.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@syndic.test>") {
		t.Errorf("Message-ID = %q, want <…@syndic.test>", id)
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if v := m.Header.Get("MIME-Version"); v != "1.0" {
		t.Errorf("MIME-Version = %q, want 1.0", v)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("Subject %q: %v", m.Header.Get("Subject"), err)
	}
	return subject
}

// TestDelivery: a plain mail and an invitation arrive by SMTP as they were
// asked for: subject, text and calendar come back the same.
func TestDelivery(t *testing.T) {
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL})

	plain := Request{
		To:      "ada@example.org",
		Subject: "Einladung: Café am Øresund – Planung für das nächste Quartal, 5 € pro Person 🎉",
		Text: "Hallo Ada,\n\nwir treffen uns im Café.\n.\n" + // a lone dot: SMTP's end of data unless stuffed
			"From here on a long line follows, longer than the seventy-six characters quoted-printable allows per line.\n" +
			"trailing space \nÜmlaute, € and = signs\nEnde\n",
	}
	calendar := Request{
		To:       "bob@example.org",
		Subject:  "Einladung: Planung Q3",
		Text:     "Hallo Bob,\nsiehe Einladung.\n",
		Calendar: invitation(t, "appointment-42@syndic.test", "Planung: Q3, Budget; Räume"),
	}
	a := s.accept(t, "delivery-plain", plain)
	b := s.accept(t, "delivery-calendar", calendar)
	mails := mx.WaitFor(t, 2, 10*time.Second)
	s.waitStatus(t, a.ID, StatusSent, 10*time.Second)
	s.waitStatus(t, b.ID, StatusSent, 10*time.Second)

	t.Run("plain", func(t *testing.T) {
		m := mailByTo(t, mails, plain.To)
		if subject := checkHeader(t, m, plain.To); subject != plain.Subject {
			t.Errorf("subject = %q, want %q", subject, plain.Subject)
		}
		mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
		if err != nil || mt != "text/plain" || !strings.EqualFold(params["charset"], "utf-8") {
			t.Errorf("Content-Type = %q, want text/plain; charset=utf-8", m.Header.Get("Content-Type"))
		}
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = msg.Body
		if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		text, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		if lf(text) != plain.Text {
			t.Errorf("text = %q, want %q", lf(text), plain.Text)
		}
	})

	t.Run("calendar", func(t *testing.T) {
		m := mailByTo(t, mails, calendar.To)
		if subject := checkHeader(t, m, calendar.To); subject != calendar.Subject {
			t.Errorf("subject = %q, want %q", subject, calendar.Subject)
		}
		mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
		if err != nil || !strings.HasPrefix(mt, "multipart/") {
			t.Fatalf("Content-Type = %q, want multipart", m.Header.Get("Content-Type"))
		}
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		parts := map[string]string{} // media type → body, transfer encoding undone
		var calParams map[string]string
		mr := multipart.NewReader(msg.Body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			pt, pp, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
			if err != nil {
				t.Fatalf("part Content-Type %q: %v", p.Header.Get("Content-Type"), err)
			}
			body, err := io.ReadAll(p) // multipart undoes quoted-printable itself
			if err != nil {
				t.Fatal(err)
			}
			if _, dup := parts[pt]; dup {
				t.Errorf("two %s parts", pt)
			}
			parts[pt] = string(body)
			if pt == "text/calendar" {
				calParams = pp
			}
		}
		if len(parts) != 2 {
			t.Errorf("parts %v, want text/plain and text/calendar", len(parts))
		}
		if got := lf([]byte(parts["text/plain"])); got != calendar.Text {
			t.Errorf("text part = %q, want %q", got, calendar.Text)
		}
		if calParams["method"] != "REQUEST" {
			t.Errorf("text/calendar method = %q, want REQUEST", calParams["method"])
		}
		if got := lf([]byte(parts["text/calendar"])); got != lf([]byte(calendar.Calendar)) {
			t.Errorf("calendar part =\n%s\nwant\n%s", got, calendar.Calendar)
		}
		cal, err := ical.NewDecoder(strings.NewReader(parts["text/calendar"])).Decode()
		if err != nil {
			t.Fatalf("calendar part does not parse: %v", err)
		}
		if method, _ := cal.Props.Text(ical.PropMethod); method != "REQUEST" {
			t.Errorf("METHOD = %q, want REQUEST", method)
		}
		events := cal.Events()
		if len(events) != 1 {
			t.Fatalf("%d events, want 1", len(events))
		}
		uid, _ := events[0].Props.Text(ical.PropUID)
		summary, _ := events[0].Props.Text(ical.PropSummary)
		if uid != "appointment-42@syndic.test" || summary != "Planung: Q3, Budget; Räume" {
			t.Errorf("event UID %q SUMMARY %q, want the ones sent", uid, summary)
		}
	})

	if mails[0].Header.Get("Message-ID") == mails[1].Header.Get("Message-ID") {
		t.Errorf("two mails with Message-ID %s", mails[0].Header.Get("Message-ID"))
	}
}

// TestTemporaryFailureRetried: a 4xx answer is retried until the server
// takes the mail, which then arrives once.
func TestTemporaryFailureRetried(t *testing.T) {
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL, MaxAttempts: 1000})
	mx.Fail(451, "mailbox busy, try again later")

	n := s.accept(t, "retry-1", ada)
	n = s.waitFor(t, n.ID, 10*time.Second, "retried", func(n Notification) bool { return n.Attempts >= 3 })
	if n.Status != StatusPending || !strings.Contains(n.LastError, "451") || !strings.Contains(n.LastError, "mailbox busy") {
		t.Errorf("after %d attempts: status %q, last error %q; want pending with the 451", n.Attempts, n.Status, n.LastError)
	}
	if got := mx.Attempts(); got < 3 {
		t.Errorf("the SMTP server saw %d attempts, want at least 3", got)
	}
	if page := s.page(t, "/"); !strings.Contains(page, "mailbox busy") {
		t.Errorf("the page does not show the last error:\n%s", page)
	}

	mx.Fail(0, "")
	n = s.waitStatus(t, n.ID, StatusSent, 10*time.Second)
	if n.LastError != "" || n.SentAt == nil {
		t.Errorf("sent notification = %+v, want sent_at and no error", n)
	}
	s.Stop(t) // a send in progress ends before Stop returns: nothing more can arrive
	if got := mx.Mails(); len(got) != 1 {
		t.Errorf("%d mails, want 1", len(got))
	}
}

// TestTemporaryFailureGivesUp: after MAX_ATTEMPTS temporary failures a
// notification is failed, showing the last error.
func TestTemporaryFailureGivesUp(t *testing.T) {
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL, MaxAttempts: 3, BreakerFailures: 100})
	mx.Fail(451, "mailbox busy, try again later")

	n := s.accept(t, "give-up-1", ada)
	n = s.waitStatus(t, n.ID, StatusFailed, 10*time.Second)
	if n.Attempts != 3 || !strings.Contains(n.LastError, "451") {
		t.Errorf("failed notification: %d attempts, last error %q; want 3 and the 451", n.Attempts, n.LastError)
	}
	if got := s.metrics(t)["syndic_notifications_failed_total"]; got != 1 {
		t.Errorf("syndic_notifications_failed_total = %v, want 1", got)
	}
	s.Stop(t)
	if got := mx.Attempts(); got != 3 {
		t.Errorf("the SMTP server saw %d attempts, want 3", got)
	}
	if got := mx.Mails(); len(got) != 0 {
		t.Errorf("%d mails, want none", len(got))
	}
}

// TestPermanentFailure: a 5xx answer fails the notification at once, and
// the error is shown in the API and on the page.
func TestPermanentFailure(t *testing.T) {
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL})
	mx.Fail(550, "no such user here")

	n := s.accept(t, "permanent-1", ada)
	n = s.waitStatus(t, n.ID, StatusFailed, 10*time.Second)
	if n.Attempts != 1 || !strings.Contains(n.LastError, "550") || !strings.Contains(n.LastError, "no such user here") {
		t.Errorf("failed notification: %d attempts, last error %q; want 1 and the 550", n.Attempts, n.LastError)
	}
	for _, path := range []string{"/", "/?status=failed"} {
		page := s.page(t, path)
		if !strings.Contains(page, "550") || !strings.Contains(page, "no such user here") || !strings.Contains(page, `class="status-failed"`) {
			t.Errorf("GET %s does not show the failed notification with its 550:\n%s", path, page)
		}
	}
	if page := s.page(t, "/?status=sent"); strings.Contains(page, "no such user here") {
		t.Errorf("GET /?status=sent shows the failed notification")
	}
	s.Stop(t)
	if got := mx.Attempts(); got != 1 {
		t.Errorf("the SMTP server saw %d attempts, want 1", got)
	}
}

// TestBreakerWhileSMTPDown: with the mail server down the breaker opens,
// shows it, and keeps the connection attempts down to a few probes; when
// the server is back every pending mail arrives exactly once.
func TestBreakerWhileSMTPDown(t *testing.T) {
	const (
		failures = 3
		openFor  = 500 * time.Millisecond
		workers  = 4
		waiting  = 5
	)
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL, BreakerFailures: failures, BreakerOpenFor: openFor, Workers: workers, MaxAttempts: 1000})
	const state, opened = `syndic_breaker_state{peer="smtp"}`, `syndic_breaker_opened_total{peer="smtp"}`

	first := s.accept(t, "down-0", Request{To: "user0@example.org", Subject: "before", Text: "before"})
	s.waitStatus(t, first.ID, StatusSent, 10*time.Second)
	if got := s.metrics(t)[state]; got != 0 {
		t.Fatalf("%s = %v with the server up, want 0 (closed)", state, got)
	}

	// Down: each connection is closed before the greeting, and counted.
	mx.HangUp()
	downAt, connsBefore := time.Now(), mx.Connections()
	var ids []int64
	for i := 1; i <= waiting; i++ {
		n := s.accept(t, fmt.Sprintf("down-%d", i), Request{To: fmt.Sprintf("user%d@example.org", i), Subject: "while down", Text: "while down"})
		ids = append(ids, n.ID)
	}
	// Opened three times: the breaker tripped, then two probes failed.
	s.waitMetric(t, opened, 20*time.Second, func(v float64) bool { return v >= 3 })
	s.waitMetric(t, state, 10*time.Second, func(v float64) bool { return v == 2 })
	waitPage(t, s, "/", `class="breaker-open"`, 10*time.Second)

	conns := mx.Connections() - connsBefore
	down := time.Since(downAt)
	// While closed, at most `failures` sends fail plus the ones other
	// workers had started; then one probe per open period at most.
	bound := failures + (workers - 1) + int(math.Ceil(float64(down)/float64(openFor))) + 1
	t.Logf("%d connections in %s down; bound %d", conns, down.Round(time.Millisecond), bound)
	if conns < failures {
		t.Errorf("%d connections while down, want at least %d (the failures that open the breaker)", conns, failures)
	}
	if conns > bound {
		t.Errorf("%d connections in %s while down, want at most %d: the breaker does not hold back", conns, down, bound)
	}
	for _, id := range ids {
		if n := s.get(t, id); n.Status != StatusPending {
			t.Errorf("notification %d is %s while the server is down, want pending", id, n.Status)
		}
	}

	// Gone: connections refused. A probe fails on that too.
	mx.Stop()
	o := s.metrics(t)[opened]
	s.waitMetric(t, opened, 10*time.Second, func(v float64) bool { return v > o })

	// Back on the same address: every pending mail goes out.
	mx.Restart(t)
	for _, id := range ids {
		s.waitStatus(t, id, StatusSent, 20*time.Second)
	}
	s.waitMetric(t, state, 10*time.Second, func(v float64) bool { return v == 0 })
	waitPage(t, s, "/", `class="breaker-closed"`, 10*time.Second)
	s.Stop(t)

	mails := mx.Mails()
	if len(mails) != waiting+1 {
		t.Errorf("%d mails, want %d", len(mails), waiting+1)
	}
	seen := map[string]bool{}
	for _, m := range mails {
		id := m.Header.Get("Message-ID")
		if id == "" || seen[id] {
			t.Errorf("Message-ID %q missing or seen twice", id)
		}
		seen[id] = true
	}
	for i := 0; i <= waiting; i++ {
		mailByTo(t, mails, fmt.Sprintf("user%d@example.org", i))
	}
}

// waitPage polls an HTML page until it contains want.
func waitPage(t testing.TB, s *testService, path, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		page := s.page(t, path)
		if strings.Contains(page, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: no %s within %s:\n%s", path, want, timeout, page)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConcurrentRetriesOneMail: the same request posted 50 times at once
// under one Idempotency-Key is one notification and one mail.
func TestConcurrentRetriesOneMail(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, databaseURL string) {
		mx := smtptest.Start(t)
		s := runService(t, Config{SMTPURL: mx.URL, DatabaseURL: databaseURL})
		const n = 50
		type answer struct {
			status int
			id     int64
			err    error
		}
		answers := make(chan answer, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				<-start
				status, got, err := s.tryPost("invite-99-ada", ada)
				answers <- answer{status, got.ID, err}
			})
		}
		close(start)
		wg.Wait()
		close(answers)

		created, ids := 0, map[int64]bool{}
		for a := range answers {
			if a.err != nil {
				t.Fatal(a.err)
			}
			switch a.status {
			case http.StatusAccepted:
				created++
			case http.StatusOK:
			default:
				t.Errorf("status = %d, want 202 once and 200 after", a.status)
			}
			ids[a.id] = true
		}
		if created != 1 || len(ids) != 1 {
			t.Fatalf("%d answers 202 and %d ids, want 1 and 1", created, len(ids))
		}
		if got := s.list(t, ""); len(got) != 1 {
			t.Fatalf("%d notifications, want 1", len(got))
		}
		for id := range ids {
			s.waitStatus(t, id, StatusSent, 10*time.Second)
		}
		s.Stop(t) // any send still going finishes before Stop returns
		if got := mx.Mails(); len(got) != 1 {
			t.Errorf("%d mails, want 1", len(got))
		}
		if got := mx.Attempts(); got != 1 {
			t.Errorf("the SMTP server saw %d attempts, want 1", got)
		}
	})
}

// TestStdout: with no SMTP_URL a mail is a JSON line on stdout.
func TestStdout(t *testing.T) {
	s := runService(t, Config{})
	n := s.accept(t, "stdout-1", Request{To: "ada@example.org", Subject: "Grüße", Text: "Hallo Ada\n"})
	s.waitStatus(t, n.ID, StatusSent, 10*time.Second)

	var mails []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.Out.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("stdout line is not JSON: %q", sc.Text())
		}
		if line["msg"] == "mail" {
			mails = append(mails, line)
		}
	}
	if len(mails) != 1 {
		t.Fatalf("%d mail lines on stdout, want 1:\n%s", len(mails), s.Out.String())
	}
	m := mails[0]
	data, _ := m["data"].(string)
	if m["to"] != "ada@example.org" || m["from"] != "noreply@syndic.test" || m["message_id"] == "" {
		t.Errorf("mail line = %v", m)
	}
	msg, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatalf("data is not a mail: %v\n%s", err, data)
	}
	if subject, _ := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); subject != "Grüße" {
		t.Errorf("subject = %q, want Grüße", subject)
	}
	if msg.Header.Get("Message-ID") != m["message_id"] {
		t.Errorf("Message-ID %q, line says %q", msg.Header.Get("Message-ID"), m["message_id"])
	}
}
