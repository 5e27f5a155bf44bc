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

// Send delivers m in one SMTP session.
func (s *SMTPSender) Send(ctx context.Context, m Message) error {
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
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
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return classify(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := s.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: s.Host}
		}
		if err := c.StartTLS(cfg); err != nil {
			return classify(err)
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return classify(err)
		}
	}
	if err := c.Mail(m.From); err != nil {
		return classify(err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return classify(err)
	}
	w, err := c.Data()
	if err != nil {
		return classify(err)
	}
	if _, err := w.Write(m.Data); err != nil {
		return classify(err)
	}
	if err := w.Close(); err != nil {
		return classify(err)
	}
	_ = c.Quit() // delivered: a failing QUIT changes nothing
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
