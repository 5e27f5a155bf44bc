package notifications

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"syndic/shared/breaker"
	"syndic/shared/metrics"
	"syndic/shared/retry"
	"syndic/shared/servicetest"
	"syndic/shared/smtptest"
	"syndic/shared/sqldb/sqldbtest"
)

// hangingSender takes a mail and does not finish sending it until
// released: a replica that died mid-delivery, as its peers see it (a send
// in progress is finished even at shutdown, so it must be let go).
type hangingSender struct{ took, release chan struct{} }

func (h hangingSender) Send(ctx context.Context, m Message) error {
	h.took <- struct{}{}
	<-h.release
	return errors.New("never sent")
}

// TestMailOfADeadReplica: a mail claimed by a replica that died (it stops
// renewing its claim) goes out from another replica once the short lease
// runs out — exactly once — while a replica that is merely slow keeps its
// claim by renewing it.
func TestMailOfADeadReplica(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		ctx := context.Background()
		mx := smtptest.Start(t)
		open := func() *SQLStore {
			s, err := NewSQLStore(ctx, servicetest.OpenDB(t, url))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		deadDB := servicetest.OpenDB(t, url)
		dead, err := NewSQLStore(ctx, deadDB)
		if err != nil {
			t.Fatal(err)
		}
		live := open()
		if _, _, err := live.Accept(ctx, "k-1", Request{To: "ada@example.org", Subject: "Hello", Text: "Hi"}); err != nil {
			t.Fatal(err)
		}
		run := func(store Store, sender Sender, lease time.Duration) context.CancelFunc {
			d := &Delivery{Store: store, Sender: sender, From: "syndic <noreply@syndic.test>", Workers: 1, Lease: lease,
				Backoff: retry.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
				Breaker: breaker.New(breaker.Settings{Name: "smtp", Failures: 100, Counts: Temporary}),
				Log:     slog.New(slog.DiscardHandler), Metrics: metrics.New()}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); d.Run(rctx) }()
			t.Cleanup(func() { cancel(); <-done })
			return cancel
		}

		// The first replica claims the mail and hangs in the send. While
		// it is alive it renews its claim: the other cannot take it.
		hang := hangingSender{took: make(chan struct{}, 1), release: make(chan struct{})}
		stopDead := run(dead, hang, 600*time.Millisecond)
		defer func() {
			if hang.release != nil {
				close(hang.release)
			}
		}()
		select {
		case <-hang.took:
		case <-time.After(10 * time.Second):
			t.Fatal("the first replica never took the mail")
		}
		smtp, err := ParseSMTPURL(mx.URL)
		if err != nil {
			t.Fatal(err)
		}
		run(live, smtp, 600*time.Millisecond)
		deadline := time.Now().Add(1500 * time.Millisecond) // two and a half leases
		for time.Now().Before(deadline) {
			if n := len(mx.Mails()); n != 0 {
				t.Fatalf("%d mails sent while the first replica still held its claim", n)
			}
			time.Sleep(20 * time.Millisecond)
		}

		// Now it dies: its database is gone, so are its renewals.
		deadDB.Close()
		died := time.Now()
		servicetest.Poll(t, 15*time.Second, "the mail sent by the other replica", func() bool { return len(mx.Mails()) > 0 })
		t.Logf("sent %s after the replica holding it died", time.Since(died).Round(time.Millisecond))
		stopDead()
		close(hang.release)
		hang.release = nil
		got, err := live.List(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		servicetest.Poll(t, 10*time.Second, "the mail marked sent", func() bool {
			got, err = live.List(ctx, "", 10)
			return err == nil && len(got) == 1 && got[0].Status == StatusSent
		})
		if n := len(mx.Mails()); n != 1 {
			t.Fatalf("%d mails, want exactly 1", n)
		}
	})
}
