package notifications

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"syndic/shared/breaker"
	"syndic/shared/metrics"
	"syndic/shared/servicetest"
	"syndic/shared/smtptest"
	"syndic/shared/sqldb/sqldbtest"
)

// sendAll accepts n mails under keys prefix-0 … and waits until each is sent.
func sendAll(t *testing.T, s *testService, prefix string, n int) []Notification {
	t.Helper()
	var out []Notification
	for i := range n {
		out = append(out, s.accept(t, fmt.Sprint(prefix, "-", i), Request{To: fmt.Sprintf("%s%d@example.org", prefix, i), Subject: "Hello", Text: "Hi"}))
	}
	for i, n := range out {
		out[i] = s.waitStatus(t, n.ID, StatusSent, 10*time.Second)
	}
	return out
}

// checkOnce fails t unless mails holds exactly one mail for each of want
// addresses, each with its own Message-ID.
func checkOnce(t *testing.T, mails []smtptest.Mail, want int) {
	t.Helper()
	if len(mails) != want {
		t.Errorf("%d mails, want %d", len(mails), want)
	}
	ids, to := map[string]bool{}, map[string]bool{}
	for _, m := range mails {
		id := m.Header.Get("Message-ID")
		if ids[id] || to[m.To[0]] {
			t.Errorf("mail to %s (%s) arrived twice", m.To[0], id)
		}
		ids[id], to[m.To[0]] = true, true
	}
}

// TestConnectionReuse: each delivery worker sends mail after mail on one
// connection, with an RSET before each but the first; shutdown closes them.
func TestConnectionReuse(t *testing.T) {
	const workers, n = 2, 20
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL, Workers: workers})
	sendAll(t, s, "reuse", n)
	s.Stop(t)
	mails := mx.Mails()
	checkOnce(t, mails, n)
	if c := mx.Connections(); c > workers {
		t.Errorf("%d connections for %d mails, want at most one per worker (%d)", c, n, workers)
	}
	seen := map[int]bool{}
	for _, m := range mails {
		if seen[m.Conn] && m.Resets != 1 || !seen[m.Conn] && m.Resets != 0 {
			t.Errorf("mail to %s on connection %d after %d RSETs, want none before the first mail of a connection and one before each other", m.To[0], m.Conn, m.Resets)
		}
		seen[m.Conn] = true
	}
	if r := mx.Resets(); r != n-len(seen) {
		t.Errorf("%d RSETs, want %d (one before each mail but the first of each connection)", r, n-len(seen))
	}
	servicetest.Poll(t, 5*time.Second, "every connection closed after shutdown", func() bool { return mx.Open() == 0 })
}

// TestIdleConnectionClosed: a worker with nothing to send lets its
// connection go after SMTP_IDLE_CLOSE, and opens a new one for the next mail.
func TestIdleConnectionClosed(t *testing.T) {
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL, Workers: 1, SMTPIdleClose: 50 * time.Millisecond})
	sendAll(t, s, "idle", 1)
	servicetest.Poll(t, 5*time.Second, "the idle connection closed", func() bool { return mx.Open() == 0 })
	sendAll(t, s, "again", 1)
	if c := mx.Connections(); c != 2 {
		t.Errorf("%d connections, want 2", c)
	}
}

// TestReconnect: the server drops the connections between two mails (an
// idle timeout): the next mail goes out on a new connection at once, without
// counting as a failed attempt. A connection that breaks at the end of DATA
// is a failed attempt (the server may have taken the mail): retried, and
// the mail arrives once.
func TestReconnect(t *testing.T) {
	const n = 5
	mx := smtptest.Start(t)
	s := runService(t, Config{SMTPURL: mx.URL, Workers: 1})
	sendAll(t, s, "before", n)
	if d := mx.DropConnections(); d != 1 {
		t.Fatalf("dropped %d connections, want the worker's 1", d)
	}
	for _, got := range sendAll(t, s, "after", n) {
		if got.Attempts != 1 || got.LastError != "" {
			t.Errorf("notification %d: %d attempts, last error %q; want 1 and none: a stale connection is no failure", got.ID, got.Attempts, got.LastError)
		}
	}
	if c := mx.Connections(); c != 2 {
		t.Errorf("%d connections, want 2 (one before the drop, one after)", c)
	}
	if r := s.metrics(t)["syndic_notifications_retries_total"]; r != 0 {
		t.Errorf("syndic_notifications_retries_total = %v, want 0", r)
	}

	mx.DropInData(1)
	got := sendAll(t, s, "broken", 1)[0]
	if got.Attempts != 2 {
		t.Errorf("notification broken at the end of DATA: %d attempts, want 2", got.Attempts)
	}
	s.Stop(t)
	checkOnce(t, mx.Mails(), 2*n+1)
	if a := mx.Attempts(); a != 2*n+2 {
		t.Errorf("the server saw %d messages, want %d", a, 2*n+2)
	}
}

// TestSMTPConnStale: SMTPConn sends on its open connection, and a
// connection the server dropped is replaced without an error.
func TestSMTPConnStale(t *testing.T) {
	mx := smtptest.Start(t)
	sender, err := ParseSMTPURL(mx.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := sender.Session().(*SMTPConn)
	defer c.Close()
	m := Message{From: "noreply@syndic.test", To: "ada@example.org", Data: []byte("Subject: hi\r\n\r\nHello\r\n")}
	for i := range 4 {
		if i == 2 {
			mx.DropConnections()
		}
		if err := c.Send(context.Background(), m); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if c.Reconnects != 1 || mx.Connections() != 2 || len(mx.Mails()) != 4 {
		t.Errorf("%d reconnects, %d connections, %d mails; want 1, 2, 4", c.Reconnects, mx.Connections(), len(mx.Mails()))
	}
}

// TestClaimedAtAccept: a notification accepted through Delivery.Accepting
// is claimed in the transaction that stores it and queued for a worker; if
// the instance dies before sending it, another instance sends it once the
// claim runs out — once.
func TestClaimedAtAccept(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		mx := smtptest.Start(t)
		smtp, err := ParseSMTPURL(mx.URL)
		if err != nil {
			t.Fatal(err)
		}
		newDelivery := func(store Store, lease time.Duration) *Delivery {
			return &Delivery{Store: store, Sender: smtp, From: "syndic <noreply@syndic.test>", Workers: 1, Lease: lease,
				Breaker: breaker.New(breaker.Settings{Name: "smtp", Failures: 100, Counts: Temporary}),
				Log:     slog.New(slog.DiscardHandler), Metrics: metrics.New()}
		}
		// The first instance accepts, and dies before any worker runs.
		dead := newDelivery(openStore(t, url), 500*time.Millisecond)
		before := time.Now()
		n, created, err := dead.Accepting().Accept(ctx, "claimed-1", ada)
		if err != nil || !created {
			t.Fatalf("Accept: created %v, err %v", created, err)
		}
		if len(dead.work) != 1 {
			t.Fatalf("%d notifications queued for the workers, want 1", len(dead.work))
		}
		live := openStore(t, url)
		if at, ok, err := live.NextDue(ctx); err != nil || !ok || at.Before(before.Add(500*time.Millisecond)) {
			t.Fatalf("NextDue = %v (%v, %v), want the claim's end, after %v", at, ok, err, before.Add(500*time.Millisecond))
		}
		if c, err := live.ClaimDue(ctx, time.Now(), time.Now().Add(time.Minute), 10); err != nil || len(c) != 0 {
			t.Fatalf("another instance claimed %d (%v) while the first holds it", len(c), err)
		}

		d := newDelivery(live, time.Second)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); d.Run(rctx) }()
		servicetest.Poll(t, 10*time.Second, "the mail sent by the other instance", func() bool {
			got, err := live.Get(ctx, n.ID)
			return err == nil && got.Status == StatusSent
		})
		cancel()
		<-done
		if got := len(mx.Mails()); got != 1 {
			t.Errorf("%d mails, want 1", got)
		}
	})
}
