// Package smtptest runs a real SMTP server inside a test process, as
// net/http/httptest does for HTTP: it listens on a loopback port, keeps every
// message it accepts, can be told to refuse messages with a given reply code,
// can be stopped and restarted on the same address to play a mail server
// that goes down and comes back, and can drop the connections it has open
// (as a server does on an idle timeout). It records which connection carried
// each mail and the RSETs before it, so a test can see a client reuse its
// connections.
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
	// Conn numbers the TCP connection that carried the mail: 1, 2, … in the
	// order the server accepted them, over all its restarts.
	Conn int
	// Resets counts the RSET commands on that connection since the previous
	// message on it (since the greeting for the first one).
	Resets int
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
	resets      int  // RSET commands
	dropInData  int  // the next this many messages: close the connection at the end of DATA, unanswered
	open        map[*conn]bool
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
	s := &Server{Addr: ln.Addr().String(), arrived: make(chan struct{}), open: map[*conn]bool{}}
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
// address: it closes the connections it has open, and from now on accepts
// each new connection and closes it at once, before the greeting, so a
// client fails as it would on a dead server while Connections still counts
// its tries. Restart ends it.
func (s *Server) HangUp() {
	s.mu.Lock()
	s.hangUp = true
	s.mu.Unlock()
	s.DropConnections()
}

// DropConnections closes every connection the server has open, as a server
// does that times idle clients out (without a 421): a client that sends on
// one of them next finds it closed. New connections are served as before.
// It returns how many it closed.
func (s *Server) DropConnections() int {
	s.mu.Lock()
	open := make([]*conn, 0, len(s.open))
	for c := range s.open {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
	return len(open)
}

// DropInData makes the server close the connection at the end of the DATA
// of each of the next n messages, without answering and without keeping the
// message: the client cannot tell whether the mail was taken, as when a
// connection breaks at the worst moment. (Attempts counts them.)
func (s *Server) DropInData(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropInData = n
}

// Open returns how many connections the server has open now.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// Resets returns how many RSET commands the server received, over all its
// connections and restarts.
func (s *Server) Resets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resets
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
		s := l.s
		s.mu.Lock()
		s.connections++
		hangUp := s.hangUp
		nc := &conn{Conn: c, n: s.connections, s: s}
		if !hangUp {
			s.open[nc] = true
		}
		s.mu.Unlock()
		if !hangUp {
			return nc, nil
		}
		c.Close()
	}
}

// conn is an accepted connection, numbered, and known to the server while
// it is open.
type conn struct {
	net.Conn
	n    int
	s    *Server
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.open, c)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	ss := &session{s: s, conn: c}
	if nc, ok := c.Conn().(*conn); ok {
		ss.n = nc.n
	}
	return ss, nil
}

// session is one SMTP conversation; AUTH PLAIN is offered and any
// credentials are accepted, but it is not required.
type session struct {
	s      *Server
	conn   *smtp.Conn
	n      int // the connection's number
	user   string
	from   string
	to     []string
	inData bool // the reset go-smtp makes after DATA is not an RSET
	resets int  // RSETs since the last message
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
	ss.inData = true
	resets := ss.resets
	ss.resets = 0
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	if s.dropInData > 0 {
		s.dropInData--
		s.mu.Unlock()
		ss.conn.Close() // takes s.mu to forget the connection
		s.mu.Lock()
		return errors.New("dropped")
	}
	if s.failCode != 0 {
		return &smtp.SMTPError{Code: s.failCode, EnhancedCode: smtp.EnhancedCodeNotSet, Message: s.failMsg}
	}
	m := Mail{From: ss.from, To: append([]string(nil), ss.to...), User: ss.user, Data: data, Received: time.Now(), Conn: ss.n, Resets: resets}
	if msg, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		m.Header = msg.Header
	}
	s.mails = append(s.mails, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
	return nil
}

// Reset is called for RSET, and by go-smtp itself after DATA and on a
// repeated EHLO; only the first (and the rare last) count as RSETs.
func (ss *session) Reset() {
	ss.from, ss.to = "", nil
	if ss.inData {
		ss.inData = false
		return
	}
	ss.resets++
	ss.s.mu.Lock()
	ss.s.resets++
	ss.s.mu.Unlock()
}

func (ss *session) Logout() error { return nil }
