package notifications

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Sender delivers one message. It returns a *SendError saying whether a
// failure is temporary (retry) or permanent (give up).
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SendError is a failed delivery.
type SendError struct {
	Temporary bool
	Err       error
}

func (e *SendError) Error() string { return e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

// Temporary reports whether err is worth retrying: SMTP 4xx answers and
// connection trouble are; 5xx answers are not.
func Temporary(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Temporary
}

// classify wraps an SMTP client error.
func classify(err error) error {
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return &SendError{Temporary: tp.Code < 500, Err: fmt.Errorf("SMTP %d: %s", tp.Code, tp.Msg)}
	}
	return &SendError{Temporary: true, Err: err}
}

// SMTPSender sends through one SMTP server, with STARTTLS when the server
// offers it and AUTH PLAIN when the URL has a user.
type SMTPSender struct {
	Addr     string // host:port
	Host     string // for TLS and HELO
	Username string
	Password string
	Timeout  time.Duration
	// TLS, when set (tests), replaces the STARTTLS configuration.
	TLS *tls.Config
}

// ParseSMTPURL reads smtp://user:pass@host:port (port 25 by default).
func ParseSMTPURL(s string) (*SMTPSender, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "smtp" || u.Hostname() == "" || u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("SMTP_URL: want smtp://user:pass@host:port")
	}
	port := u.Port()
	if port == "" {
		port = "25"
	}
	s2 := &SMTPSender{Addr: net.JoinHostPort(u.Hostname(), port), Host: u.Hostname(), Timeout: 30 * time.Second}
	if u.User != nil {
		s2.Username = u.User.Username()
		s2.Password, _ = u.User.Password()
	}
	return s2, nil
}

// Send delivers m in an SMTP session of its own: connect, send, QUIT.
func (s *SMTPSender) Send(ctx context.Context, m Message) error {
	c := &SMTPConn{s: s}
	defer c.Close()
	return c.Send(ctx, m)
}

// Session returns a connection of its own for one delivery worker: it is
// opened at the first Send and kept for the next ones.
func (s *SMTPSender) Session() Session { return &SMTPConn{s: s} }

// Session is a Sender for one goroutine that keeps its connection between
// messages. Close ends the connection; a Send after it opens a new one.
type Session interface {
	Sender
	Close() error
}

// Sessions is a Sender that can give each delivery worker a Session.
type Sessions interface {
	Session() Session
}

// SMTPConn is one SMTP connection reused across messages: RSET before each
// message after the first, which also checks that the connection still
// works. A message that fails because the reused connection went stale — an
// I/O error or a 421 before the end of its DATA, so the server cannot have
// taken it — is sent again at once on a new connection, and only that
// attempt's outcome is returned. Any other I/O error closes the connection
// (the next Send opens a new one); an SMTP refusal keeps it. Not safe for
// concurrent use.
type SMTPConn struct {
	s    *SMTPSender
	conn net.Conn
	c    *smtp.Client
	// Reconnects counts the stale connections replaced (tests and metrics).
	Reconnects int
}

// errStale marks a failure on a reused connection before the end of DATA.
type errStale struct{ err error }

func (e errStale) Error() string { return e.err.Error() }

// Send delivers m, on the open connection when there is one.
func (sc *SMTPConn) Send(ctx context.Context, m Message) error {
	ctx, cancel := context.WithTimeout(ctx, sc.s.Timeout)
	defer cancel()
	if sc.c != nil {
		err := sc.transaction(ctx, m, true)
		var stale errStale
		if !errors.As(err, &stale) {
			return err
		}
		sc.Reconnects++
	}
	if err := sc.dial(ctx); err != nil {
		return err
	}
	return sc.transaction(ctx, m, false)
}

// dial opens a connection: greeting, EHLO, STARTTLS when offered, AUTH
// when configured.
func (sc *SMTPConn) dial(ctx context.Context) error {
	s := sc.s
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return &SendError{Temporary: true, Err: fmt.Errorf("SMTP %s: %w", s.Addr, err)}
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		conn.Close()
		return classify(err)
	}
	fail := func(err error) error {
		c.Close()
		return classify(err)
	}
	if err := c.Hello("localhost"); err != nil {
		return fail(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := s.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: s.Host}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fail(err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fail(err)
		}
	}
	sc.conn, sc.c = conn, c
	return nil
}

// transaction sends m on the open connection (RSET first when reused). A
// failure that leaves the connection unusable closes it; on a reused one
// before the end of DATA it is an errStale.
func (sc *SMTPConn) transaction(ctx context.Context, m Message, reused bool) error {
	deadline, _ := ctx.Deadline()
	sc.conn.SetDeadline(deadline)
	c := sc.c
	fail := func(err error, beforeEnd bool) error {
		var tp *textproto.Error
		isReply := errors.As(err, &tp)
		if !isReply || tp.Code == 421 { // the connection is gone or going
			sc.drop()
			if reused && beforeEnd {
				return errStale{err}
			}
		}
		return classify(err)
	}
	if reused {
		if err := c.Reset(); err != nil {
			return fail(err, true)
		}
	}
	if err := c.Mail(m.From); err != nil {
		return fail(err, true)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fail(err, true)
	}
	w, err := c.Data()
	if err != nil {
		return fail(err, true)
	}
	if _, err := w.Write(m.Data); err != nil {
		return fail(err, true) // no end of data sent: nothing the server could take
	}
	if err := w.Close(); err != nil { // the end of data, and the server's answer
		return fail(err, false)
	}
	return nil
}

// drop closes the connection without QUIT.
func (sc *SMTPConn) drop() {
	if sc.c != nil {
		sc.c.Close()
		sc.conn, sc.c = nil, nil
	}
}

// Close says QUIT (briefly) and closes the connection, if one is open.
func (sc *SMTPConn) Close() error {
	if sc.c == nil {
		return nil
	}
	sc.conn.SetDeadline(time.Now().Add(time.Second))
	_ = sc.c.Quit() // everything sent was answered: a failing QUIT changes nothing
	sc.drop()
	return nil
}

// StdoutSender writes each mail as one JSON line, for running without an
// SMTP server.
type StdoutSender struct {
	mu sync.Mutex
	W  io.Writer
}

// Send writes m.
func (s *StdoutSender) Send(_ context.Context, m Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := struct {
		Time      time.Time `json:"time"`
		Msg       string    `json:"msg"`
		From      string    `json:"from"`
		To        string    `json:"to"`
		MessageID string    `json:"message_id"`
		Data      string    `json:"data"`
	}{time.Now().UTC(), "mail", m.From, m.To, m.MessageID, strings.ReplaceAll(string(m.Data), "\r\n", "\n")}
	if err := json.NewEncoder(s.W).Encode(line); err != nil {
		return &SendError{Temporary: true, Err: err}
	}
	return nil
}
