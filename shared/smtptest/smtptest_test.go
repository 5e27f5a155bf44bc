package smtptest_test

import (
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"syndic/shared/smtptest"
)

func message(subject string) []byte {
	return []byte("From: ada@example.org\r\nTo: bob@example.org\r\nSubject: " + subject + "\r\n\r\nHello Bob,\r\n.\r\nbye\r\n")
}

func TestReceive(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t)
	if !strings.HasPrefix(s.URL, "smtp://127.0.0.1:") || !strings.HasSuffix(s.URL, s.Addr) {
		t.Fatalf("URL = %q, Addr = %q", s.URL, s.Addr)
	}
	if err := smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org", "eve@example.org"}, message("one")); err != nil {
		t.Fatal(err)
	}
	auth := smtp.PlainAuth("", "ada", "secret", "127.0.0.1")
	if err := smtp.SendMail(s.Addr, auth, "ada@example.org", []string{"bob@example.org"}, message("two")); err != nil {
		t.Fatal(err)
	}
	got := s.WaitFor(t, 2, 5*time.Second)
	if len(got) != 2 {
		t.Fatalf("%d mails, want 2", len(got))
	}
	m := got[0]
	if m.From != "ada@example.org" || strings.Join(m.To, ",") != "bob@example.org,eve@example.org" || m.User != "" {
		t.Errorf("first mail: from %q to %q user %q", m.From, m.To, m.User)
	}
	if m.Header.Get("Subject") != "one" {
		t.Errorf("Subject = %q, want one", m.Header.Get("Subject"))
	}
	if !strings.HasSuffix(string(m.Data), "\r\n\r\nHello Bob,\r\n.\r\nbye\r\n") { // dot-stuffing undone
		t.Errorf("Data = %q", m.Data)
	}
	if m.Received.IsZero() {
		t.Error("Received not set")
	}
	if got[1].User != "ada" || got[1].Header.Get("Subject") != "two" {
		t.Errorf("second mail: user %q subject %q, want ada, two", got[1].User, got[1].Header.Get("Subject"))
	}
	if n := s.Attempts(); n != 2 {
		t.Errorf("Attempts = %d, want 2", n)
	}
	if n := s.Connections(); n != 2 {
		t.Errorf("Connections = %d, want 2", n)
	}
	got[0].Data[0] = 'X' // a copy
	if s.Mails()[0].Data[0] != 'F' {
		t.Error("Mails shares its data with the caller")
	}
}

func TestFail(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t)
	for _, tc := range []struct {
		code int
		msg  string
	}{{451, "try again later"}, {550, "no such user"}} {
		s.Fail(tc.code, tc.msg)
		err := smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org"}, message("refused"))
		var tp *textproto.Error
		if !errors.As(err, &tp) || tp.Code != tc.code || !strings.Contains(tp.Msg, tc.msg) {
			t.Errorf("Fail(%d): err = %v, want SMTP %d %s", tc.code, err, tc.code, tc.msg)
		}
	}
	s.Fail(0, "")
	if err := smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org"}, message("accepted")); err != nil {
		t.Fatal(err)
	}
	if got := s.Mails(); len(got) != 1 || got[0].Header.Get("Subject") != "accepted" {
		t.Errorf("mails = %v, want only the accepted one", got)
	}
	if n := s.Attempts(); n != 3 {
		t.Errorf("Attempts = %d, want 3", n)
	}
}

func TestStopHangUpRestart(t *testing.T) {
	s := smtptest.Start(t)
	send := func(subject string) error {
		return smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org"}, message(subject))
	}
	if err := send("before"); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	if c, err := net.Dial("tcp", s.Addr); err == nil {
		c.Close()
		t.Fatal("connection accepted after Stop")
	}
	s.Stop() // twice is fine

	s.Restart(t)
	s.HangUp()
	before := s.Connections()
	for range 3 {
		if err := send("hung up"); err == nil {
			t.Fatal("mail accepted while hanging up")
		}
	}
	if n := s.Connections() - before; n != 3 {
		t.Errorf("%d connections counted while hanging up, want 3", n)
	}

	s.Restart(t)
	if err := send("after"); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, m := range s.Mails() {
		subjects = append(subjects, m.Header.Get("Subject"))
	}
	if strings.Join(subjects, ",") != "before,after" {
		t.Errorf("subjects = %v, want [before after]", subjects)
	}
}

func TestWaitForConcurrent(t *testing.T) {
	s := smtptest.Start(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org"}, message(fmt.Sprint(i)))
		})
	}
	got := s.WaitFor(t, n, 10*time.Second)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if len(got) != n {
		t.Errorf("%d mails, want %d", len(got), n)
	}
}

// TestConnAndResets: mails sent over one connection carry its number, and
// each counts the RSETs since the one before; another connection has
// another number.
func TestConnAndResets(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t)
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(subject string) {
		t.Helper()
		if err := c.Mail("ada@example.org"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("bob@example.org"); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(message(subject)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	send("one")
	send("two") // no RSET
	for range 2 {
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
	}
	send("three")
	if err := smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org"}, message("other")); err != nil {
		t.Fatal(err)
	}
	got := s.WaitFor(t, 4, 5*time.Second)
	var conns, resets []int
	for _, m := range got {
		conns, resets = append(conns, m.Conn), append(resets, m.Resets)
	}
	if fmt.Sprint(conns) != "[1 1 1 2]" || fmt.Sprint(resets) != "[0 0 2 0]" {
		t.Errorf("connections %v, resets %v; want [1 1 1 2] and [0 0 2 0]", conns, resets)
	}
	if n := s.Resets(); n != 2 {
		t.Errorf("Resets = %d, want 2", n)
	}
}

// TestDropConnections: an open connection is closed under the client,
// which finds out at its next command; a new connection works.
func TestDropConnections(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t)
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	if n := s.DropConnections(); n != 1 {
		t.Errorf("DropConnections = %d, want 1", n)
	}
	if err := c.Noop(); err == nil {
		t.Error("NOOP answered on a dropped connection")
	}
	if err := smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org"}, message("after")); err != nil {
		t.Fatal(err)
	}
}

// TestDropInData: the connection breaks at the end of DATA, the mail is not
// kept, and the next one is taken.
func TestDropInData(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t)
	s.DropInData(1)
	var tp *textproto.Error
	if err := smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org"}, message("lost")); err == nil || errors.As(err, &tp) {
		t.Fatalf("err = %v, want a broken connection", err)
	}
	if err := smtp.SendMail(s.Addr, nil, "ada@example.org", []string{"bob@example.org"}, message("kept")); err != nil {
		t.Fatal(err)
	}
	if got := s.Mails(); len(got) != 1 || got[0].Header.Get("Subject") != "kept" {
		t.Errorf("mails = %v, want only the kept one", got)
	}
	if n := s.Attempts(); n != 2 {
		t.Errorf("Attempts = %d, want 2", n)
	}
}

// TestOpen: Open counts the connections open now.
func TestOpen(t *testing.T) {
	t.Parallel()
	s := smtptest.Start(t)
	c, err := smtp.Dial(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	if n := s.Open(); n != 1 {
		t.Errorf("Open = %d with one connection, want 1", n)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Open = %d after QUIT, want 0", s.Open())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
