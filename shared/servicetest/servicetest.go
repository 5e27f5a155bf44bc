// Package servicetest is the harness of every syndic test that talks to a
// service: Start runs a service's Run inside the test process on a
// loopback port, the way main would, waits for /readyz, and stops the
// service (waiting for Run to return) when asked or when the test ends;
// WaitReady is the one wait for /readyz, for built binaries too; Client is
// the one JSON client (a request with a JSON body, the status, the answer
// decoded).
package servicetest

import (
	"context"
	"net"
	"net/http"
	"sync"
	"syndic/shared/sqldb"
	"testing"
	"time"
)

// Service is a running service.
type Service struct {
	URL    string // http://127.0.0.1:PORT
	Addr   string // 127.0.0.1:PORT
	Client *http.Client

	stop func()
}

// Start runs run on addr ("" for a free loopback port; a restarted service
// gets its old address back) and returns once GET /readyz answers 200.
func Start(t testing.TB, addr string, run func(ctx context.Context, ln net.Listener) error) *Service {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 100 { // the port of a service just stopped may take a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		err := run(ctx, ln)
		ln.Close() // a Run that failed before serving leaves it open: /readyz would hang, not fail
		done <- err
		close(exited)
	}()
	s := &Service{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(),
		Client: &http.Client{Transport: &http.Transport{}, Timeout: 60 * time.Second}}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			// A connection dialled but never used holds a graceful shutdown
			// for 5 s (net/http counts it idle only then): close ours first.
			s.Client.CloseIdleConnections()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30 s of cancel")
			}
		})
	}
	t.Cleanup(s.stop)
	if !WaitReady(t, s.URL, exited) {
		err := <-done
		done <- err // for the cleanup's stop
		t.Fatalf("Run returned before ready: %v", err)
	}
	return s
}

// WaitReady polls base/readyz until it answers 200 (true) or exited is
// closed (false; nil for never): the one wait-for-ready of every test,
// in-process or a built binary. It fails t after 20 s.
func WaitReady(t testing.TB, base string, exited <-chan struct{}) bool {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return false
		default:
		}
		resp, err := c.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/readyz did not answer 200 within 20 s (%v)", base, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Poll calls cond until it holds, failing t after timeout with what.
func Poll(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop stops the service and waits for Run to return. Stopping twice does
// nothing.
func (s *Service) Stop() { s.stop() }

// OpenDB opens the database at url (migrations are the caller's), closed
// when the test ends.
func OpenDB(t testing.TB, url string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
