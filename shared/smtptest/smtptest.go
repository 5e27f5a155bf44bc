// Package smtptest runs a real SMTP server inside a test process, as
// net/http/httptest does for HTTP: it listens on a loopback port, keeps every
// message it accepts, can be told to refuse messages with a given reply code,
// and can be stopped and restarted on the same address to play a mail server
// that goes down and comes back.
package smtptest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/mail"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one message the server accepted.
type Mail struct {
	From     string      // MAIL FROM
	To       []string    // RCPT TO, in order
	User     string      // the AUTH PLAIN user of the session; "" without AUTH
	Data     []byte      // the message as received, CRLF line ends
	Header   mail.Header // Data's header, parsed; nil when it does not parse
	Received time.Time
}

// Server is an SMTP server on 127.0.0.1. Its methods are safe for concurrent
// use.
type Server struct {
	Addr string // host:port, the same across Stop and Restart
	URL  string // smtp://host:port, for an SMTP_URL setting

	mu          sync.Mutex
	mails       []Mail
	arrived     chan struct{} // closed and replaced when a mail arrives
	failCode    int
	failMsg     string
	attempts    int  // messages that reached the end of DATA
	connections int  // TCP connections accepted
	hangUp      bool // close new connections before the greeting
	srv         *smtp.Server
	ln          net.Listener  // srv's
	served      chan struct{} // closed when srv's Serve returns
}

// Start starts a Server on a free loopback port; it stops when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s := &Server{Addr: ln.Addr().String(), arrived: make(chan struct{})}
	s.URL = "smtp://" + s.Addr
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// serve starts a fresh go-smtp server on ln (a closed go-smtp server cannot
// serve again).
func (s *Server) serve(ln net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxMessageBytes = 32 << 20
	srv.ErrorLog = log.New(io.Discard, "", 0) // t.Log would panic after the test ends
	served := make(chan struct{})
	s.mu.Lock()
	s.srv, s.ln, s.served = srv, ln, served
	s.mu.Unlock()
	go func() {
		defer close(served)
		_ = srv.Serve(&countingListener{Listener: ln, s: s})
	}()
}

// Stop closes the listener and every open connection: from now on
// connections to Addr are refused, until Restart. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, ln, served := s.srv, s.ln, s.served
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	// srv.Close closes only the listeners Serve has registered: a Stop right
	// after Start may come first, and Serve would then accept forever.
	_ = ln.Close()
	<-served
}

// HangUp makes the server play a mail server that is down behind its
// address: from now on it accepts each new connection and closes it at once,
// before the greeting, so a client fails as it would on a dead server while
// Connections still counts its tries. Restart ends it.
func (s *Server) HangUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangUp = true
}

// Restart listens on Addr again after Stop (or HangUp), keeping the mails
// received so far and the Fail setting. It fails t when the address cannot
// be had back within 5 s.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.mu.Lock()
	s.hangUp = false
	s.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.Addr)
		if err == nil {
			s.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtptest: listen again on %s: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond) // the port is still held: try again
	}
}

// Fail makes the server refuse every message from now on, at the end of
// DATA, with code and msg: a 4xx code is a temporary failure (the client
// should retry), a 5xx code a permanent one. Fail(0, "") accepts messages
// again.
func (s *Server) Fail(code int, msg string) {
	if code != 0 && (code < 400 || code > 599) {
		panic(fmt.Sprintf("smtptest: Fail(%d): want a 4xx or 5xx code, or 0", code))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failCode, s.failMsg = code, msg
}

// Mails returns a copy of the mails accepted so far, in arrival order.
func (s *Server) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Mail, len(s.mails))
	for i, m := range s.mails {
		m.To = append([]string(nil), m.To...)
		m.Data = bytes.Clone(m.Data)
		out[i] = m
	}
	return out
}

// WaitFor waits until at least n mails have been accepted and returns them
// all; it fails t when they have not arrived within timeout.
func (s *Server) WaitFor(t testing.TB, n int, timeout time.Duration) []Mail {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		got, arrived := len(s.mails), s.arrived
		s.mu.Unlock()
		if got >= n {
			return s.Mails()
		}
		select {
		case <-arrived:
		case <-timer.C:
			t.Fatalf("smtptest: %d mails after %s, want at least %d", got, timeout, n)
			return nil
		}
	}
}

// Attempts returns how many messages were offered (DATA sent to the end),
// accepted or refused.
func (s *Server) Attempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Connections returns how many TCP connections the server accepted, over
// all its restarts.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

type countingListener struct {
	net.Listener
	s *Server
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.s.mu.Lock()
		l.s.connections++
		hangUp := l.s.hangUp
		l.s.mu.Unlock()
		if !hangUp {
			return c, nil
		}
		c.Close()
	}
}

func (s *Server) newSession(*smtp.Conn) (smtp.Session, error) {
	return &session{s: s}, nil
}

// session is one SMTP conversation; AUTH PLAIN is offered and any
// credentials are accepted, but it is not required.
type session struct {
	s    *Server
	user string
	from string
	to   []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, username, _ string) error {
		if username == "" {
			return errors.New("empty user name")
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from, ss.to = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.failCode != 0 {
		return &smtp.SMTPError{Code: s.failCode, EnhancedCode: smtp.EnhancedCodeNotSet, Message: s.failMsg}
	}
	m := Mail{From: ss.from, To: append([]string(nil), ss.to...), User: ss.user, Data: data, Received: time.Now()}
	if msg, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		m.Header = msg.Header
	}
	s.mails = append(s.mails, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }
