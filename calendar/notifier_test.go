package calendar

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"syndic/shared/breaker"
	"syndic/shared/metrics"
	"syndic/shared/retry"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// standIn is a notifications service that answers every call with what
// answer says and records the calls.
type standIn struct {
	*httptest.Server
	mu     sync.Mutex
	calls  []standInCall
	conns  int             // connections opened to it
	answer func(n int) int // status of the nth call (1-based); 0 drops the connection
}

type standInCall struct {
	At    time.Time
	Key   string
	Auth  string
	Body  map[string]string
	Valid bool // POST /api/notifications, JSON
}

func newStandIn(t *testing.T, answer func(n int) int) *standIn {
	t.Helper()
	s := &standIn{answer: answer}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := standInCall{At: time.Now(), Key: r.Header.Get("Idempotency-Key"), Auth: r.Header.Get("Authorization")}
		c.Valid = r.Method == http.MethodPost && r.URL.Path == "/api/notifications" &&
			r.Header.Get("Content-Type") == "application/json" && json.NewDecoder(r.Body).Decode(&c.Body) == nil
		s.mu.Lock()
		s.calls = append(s.calls, c)
		status := s.answer(len(s.calls))
		s.mu.Unlock()
		if status == 0 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.WriteHeader(status)
		if status == http.StatusAccepted { // the notification stored, as notifications answers
			json.NewEncoder(w).Encode(map[string]any{"status": "queued", "request": c.Body})
		} else {
			w.Write([]byte(`{"error":"stand-in says no"}`))
		}
	}))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// Calls returns the calls so far.
func (s *standIn) Calls() []standInCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]standInCall(nil), s.calls...)
}

// Conns returns how many connections were opened to it.
func (s *standIn) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func always(status int) func(int) int { return func(int) int { return status } }

// startNotifier runs n (with the test's defaults for what it leaves zero)
// until the returned stop is called or the test ends. stop returns once
// Run has.
func startNotifier(t *testing.T, n *Notifier) (stop func()) {
	t.Helper()
	if n.Log == nil {
		n.Log = slog.New(slog.DiscardHandler)
	}
	if n.Metrics == nil {
		n.Metrics = metrics.New()
	}
	if n.Breaker == nil {
		n.Breaker = breaker.New(breaker.Settings{Name: "notifications", Failures: 1000, Counts: IsPeerFailure})
	}
	if n.Backoff.Min == 0 {
		n.Backoff = retry.Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}
	}
	if n.Authorize == nil {
		n.Authorize = func(r *http.Request) { r.Header.Set("Authorization", "Bearer calendar-token") }
	}
	n.init() // before Run's goroutine, so the test may look at n.ch
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing t after ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// outboxOf returns every entry of appointments ids, failing t on error.
func outboxOf(t *testing.T, s *SQLStore, ids ...int64) []OutboxEntry {
	t.Helper()
	var out []OutboxEntry
	for _, id := range ids {
		es, err := s.Notifications(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, es...)
	}
	return out
}

// settled reports whether every entry of appointments ids has status.
func settled(t *testing.T, s *SQLStore, status string, ids ...int64) func() bool {
	return func() bool {
		es := outboxOf(t, s, ids...)
		for _, e := range es {
			if e.Status != status {
				return false
			}
		}
		return len(es) > 0
	}
}

// appointmentWith creates an appointment with participants and returns its
// id.
func appointmentWith(t *testing.T, s *SQLStore, participants ...int64) int64 {
	t.Helper()
	a, err := s.Create(context.Background(), mailInput("Design review", participants...))
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// TestNotifierDelivers: each entry committed is posted once, with its
// Idempotency-Key, what the mailer worded and the authorization, and is
// marked sent after one attempt.
func TestNotifierDelivers(t *testing.T) {
	s, db := openMailStore(t, sqldbtest.SQLiteURL(t))
	seedMailContacts(t, db)
	srv := newStandIn(t, always(http.StatusAccepted))
	stop := startNotifier(t, &Notifier{Store: s, URL: srv.URL + "/", Committed: db.Committed, Sweep: time.Hour})

	// The sweep at start found nothing: only the commit can bring these.
	id := appointmentWith(t, s, 7, 8, 9)
	waitFor(t, "three entries sent", settled(t, s, "sent", id))
	stop()

	es := outboxOf(t, s, id)
	calls := srv.Calls()
	if len(es) != 3 || len(calls) != len(es) {
		t.Fatalf("%d entries, %d calls; want 3 of each", len(es), len(calls))
	}
	byKey := map[string]standInCall{}
	for _, c := range calls {
		if !c.Valid {
			t.Errorf("call %+v is not a JSON POST to /api/notifications", c)
		}
		if _, dup := byKey[c.Key]; dup {
			t.Errorf("Idempotency-Key %q posted twice", c.Key)
		}
		byKey[c.Key] = c
	}
	for _, e := range es {
		c, ok := byKey[e.Key]
		if !ok {
			t.Errorf("entry %d (key %q) never posted", e.ID, e.Key)
			continue
		}
		if e.Attempts != 1 || e.LastError != "" {
			t.Errorf("entry %d: %d attempts, last error %q; want 1 and none", e.ID, e.Attempts, e.LastError)
		}
		want := map[string]string{"to": e.To, "subject": e.Subject, "text": e.Text, "calendar": e.Calendar}
		for k, v := range want {
			if c.Body[k] != v {
				t.Errorf("entry %d: posted %s = %q, want %q", e.ID, k, c.Body[k], v)
			}
		}
		if c.Auth != "Bearer calendar-token" {
			t.Errorf("entry %d: Authorization = %q, want the one Authorize sets", e.ID, c.Auth)
		}
	}
}

// TestNotifierKeepsConnections: one worker makes every call on one
// connection, though notifications answers each with the whole notification
// stored (a body the notifier has no use for).
func TestNotifierKeepsConnections(t *testing.T) {
	s, db := openMailStore(t, sqldbtest.SQLiteURL(t))
	seedMailContacts(t, db)
	srv := newStandIn(t, always(http.StatusAccepted))
	startNotifier(t, &Notifier{Store: s, URL: srv.URL, Committed: db.Committed, Workers: 1})
	var ids []int64
	for range 5 {
		ids = append(ids, appointmentWith(t, s, 7, 8, 9))
	}
	waitFor(t, "fifteen entries sent", settled(t, s, "sent", ids...))
	if calls, conns := len(srv.Calls()), srv.Conns(); calls != 15 || conns != 1 {
		t.Errorf("%d calls on %d connections; want 15 on 1", calls, conns)
	}
}

// TestNotifierRetries: a 5xx or a dropped connection is retried, each time
// after a longer backoff, and the entry is marked failed after MaxAttempts
// calls; the breaker stays out of it (it does not open at these counts).
func TestNotifierRetries(t *testing.T) {
	for name, status := range map[string]int{"503": http.StatusServiceUnavailable, "dropped": 0} {
		t.Run(name, func(t *testing.T) {
			s, db := openMailStore(t, sqldbtest.SQLiteURL(t))
			seedMailContacts(t, db)
			srv := newStandIn(t, always(status))
			const maxAttempts, minBackoff = 4, 20 * time.Millisecond
			startNotifier(t, &Notifier{Store: s, URL: srv.URL, Committed: db.Committed, Sweep: 5 * time.Millisecond,
				MaxAttempts: maxAttempts, Backoff: retry.Backoff{Min: minBackoff, Max: 8 * minBackoff}})

			id := appointmentWith(t, s, 7)
			waitFor(t, "the entry marked failed", settled(t, s, "failed", id))
			e := outboxOf(t, s, id)[0]
			if e.Attempts != maxAttempts {
				t.Errorf("attempts = %d, want %d", e.Attempts, maxAttempts)
			}
			if want := map[int]string{503: "notifications answered 503", 0: "notifications: "}[status]; !strings.Contains(e.LastError, want) {
				t.Errorf("last error = %q, want it to say %q", e.LastError, want)
			}
			calls := srv.Calls()
			if len(calls) != maxAttempts {
				t.Fatalf("%d calls, want %d", len(calls), maxAttempts)
			}
			// Backoff n is at least half of Backoff.Min·2ⁿ⁻¹, counted from
			// after the failed call (a lower bound the notifier guarantees,
			// whatever the scheduling; 1 ms for the stored microseconds).
			for i := 1; i < len(calls); i++ {
				if calls[i].Key != e.Key {
					t.Errorf("call %d: key %q, want %q", i+1, calls[i].Key, e.Key)
				}
				least := minBackoff<<(i-1)/2 - time.Millisecond
				if gap := calls[i].At.Sub(calls[i-1].At); gap < least {
					t.Errorf("retry %d came %v after the failure, want at least %v", i, gap, least)
				}
			}
		})
	}
}

// TestNotifierRefused: a 400 or 422 is marked failed at the first call, and
// does not count toward the breaker: with a breaker that one counted
// failure opens for an hour, every entry is still called once.
func TestNotifierRefused(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusUnprocessableEntity} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			s, db := openMailStore(t, sqldbtest.SQLiteURL(t))
			seedMailContacts(t, db)
			srv := newStandIn(t, always(status))
			b := breaker.New(breaker.Settings{Name: "notifications", Failures: 1, OpenFor: time.Hour, Counts: IsPeerFailure})
			// One worker: the calls are one after the other, each after the
			// answer to the one before has reached the breaker.
			stop := startNotifier(t, &Notifier{Store: s, URL: srv.URL, Committed: db.Committed, Breaker: b, Workers: 1, MaxAttempts: 10})

			id := appointmentWith(t, s, 7, 8, 9)
			waitFor(t, "three entries marked failed", settled(t, s, "failed", id))
			stop()
			for _, e := range outboxOf(t, s, id) {
				if e.Attempts != 1 || !strings.Contains(e.LastError, "stand-in says no") {
					t.Errorf("entry %d: %d attempts, last error %q; want 1 and the answer", e.ID, e.Attempts, e.LastError)
				}
			}
			if n := len(srv.Calls()); n != 3 {
				t.Errorf("%d calls, want 3", n)
			}
			if got := b.State(); got != "closed" {
				t.Errorf("breaker %s, want closed", got)
			}
		})
	}
}

// TestNotifierBreakerOpen: once the breaker opens, the workers wait: new
// entries fill the queue, but nobody calls notifications, nor knocks at the
// breaker, and nothing is counted as an attempt.
func TestNotifierBreakerOpen(t *testing.T) {
	s, db := openMailStore(t, sqldbtest.SQLiteURL(t))
	seedMailContacts(t, db)
	srv := newStandIn(t, always(http.StatusServiceUnavailable))
	const failures, workers = 2, 4
	m := metrics.New()
	b := breaker.New(breaker.Settings{Name: "notifications", Failures: failures, OpenFor: time.Hour, Counts: IsPeerFailure, Met: m})
	n := &Notifier{Store: s, URL: srv.URL, Committed: db.Committed, Breaker: b, Workers: workers, MaxAttempts: 100,
		Sweep: 5 * time.Millisecond}
	stop := startNotifier(t, n)

	// One entry, so that the calls are one after the other: the breaker
	// opens at the second failure.
	first := appointmentWith(t, s, 7)
	waitFor(t, "the breaker to open", func() bool { return b.State() == "open" })
	// Six more entries: four workers take one entry each and wait; three
	// are left in the queue.
	second := appointmentWith(t, s, 7, 8, 9, 10, 11)
	if es := outboxOf(t, s, second); len(es) != 4 {
		t.Fatalf("%d entries, want 4 (Eve has no address)", len(es))
	}
	third := appointmentWith(t, s, 8, 9)
	waitFor(t, "three entries queued behind four waiting workers", func() bool { return len(n.ch) == 7-workers })
	stop()

	if calls := srv.Calls(); len(calls) != failures {
		t.Errorf("%d calls, want %d: none while the breaker is open", len(calls), failures)
	}
	for _, e := range outboxOf(t, s, first, second, third) {
		want := 0
		if e.AppointmentID == first {
			want = failures
		}
		if e.Status != "pending" || e.Attempts != want {
			t.Errorf("entry %d: %s after %d attempts, want pending after %d", e.ID, e.Status, e.Attempts, want)
		}
	}
	// Every entry was taken after the breaker had opened: a worker that
	// waits never gets as far as the breaker's refusal.
	if n := m.Counter(`breaker_rejected{peer="notifications"}`, "").Count(); n != 0 {
		t.Errorf("breaker refused %d calls, want none: the workers should wait it out", n)
	}
	if got := b.State(); got != "open" {
		t.Errorf("breaker %s, want open", got)
	}
}

// TestNotifierBreakerOpenHoldsNoClaims: workers waiting out an open
// breaker hold no claim on the entries they wait with, so a replica whose
// calls go through can take them; one it took is not called for here when
// the breaker lets calls through again, the others are.
func TestNotifierBreakerOpenHoldsNoClaims(t *testing.T) {
	s, db := openMailStore(t, sqldbtest.SQLiteURL(t))
	seedMailContacts(t, db)
	srv := newStandIn(t, func(call int) int {
		if call <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	})
	b := breaker.New(breaker.Settings{Name: "notifications", Failures: 2, OpenFor: time.Second, Counts: IsPeerFailure})
	n := &Notifier{Store: s, URL: srv.URL, Committed: db.Committed, Breaker: b, MaxAttempts: 100,
		Sweep: 5 * time.Millisecond, Lease: 300 * time.Millisecond}
	startNotifier(t, n)

	first := appointmentWith(t, s, 7)
	waitFor(t, "the breaker to open", func() bool { return b.State() == "open" })
	second := appointmentWith(t, s, 8, 9, 10)
	waitFor(t, "four entries with the four workers", func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.inflight) == 4 && len(n.ch) == 0
	})
	time.Sleep(50 * time.Millisecond) // a worker that claims would have by now; not synchronisation
	claims := func() (ids []int64) {
		ids, err := sqldb.All(context.Background(), db, scanID, `SELECT id FROM outbox WHERE lease_until > 0 ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if b.State() != "open" {
		t.Fatal("the breaker closed before the claims were looked at: lengthen OpenFor")
	}
	if held := claims(); len(held) != 0 {
		t.Fatalf("entries %v claimed while the breaker is open; want none", held)
	}
	// Another replica takes one of them.
	theirs := outboxOf(t, s, second)[0]
	if _, ok, err := s.ClaimOutbox(context.Background(), theirs.ID, time.Now(), time.Hour, time.Time{}); err != nil || !ok {
		t.Fatalf("the other replica's claim: ok %v, err %v", ok, err)
	}
	waitFor(t, "the rest sent once the breaker closes", func() bool {
		for _, e := range outboxOf(t, s, first, second) {
			if e.ID != theirs.ID && e.Status != "sent" {
				return false
			}
		}
		return true
	})
	for _, c := range srv.Calls() {
		if c.Key == theirs.Key {
			t.Errorf("entry %d was posted here while another replica held it", theirs.ID)
		}
	}
	if got := outboxOf(t, s, second)[0]; got.Status != "pending" || got.Attempts != 0 {
		t.Errorf("the other replica's entry: %s after %d attempts; want pending, untried", got.Status, got.Attempts)
	}
}

// TestNotifierRestart: what one notifier left pending (never tried, or
// tried and due again) the next one, on the same database opened anew,
// delivers at start, each entry once.
func TestNotifierRestart(t *testing.T) {
	url := sqldbtest.SQLiteURL(t)
	s, db := openMailStore(t, url)
	seedMailContacts(t, db)
	down := newStandIn(t, always(http.StatusServiceUnavailable))
	b := breaker.New(breaker.Settings{Name: "notifications", Failures: 1, OpenFor: time.Hour, Counts: IsPeerFailure})
	stop := startNotifier(t, &Notifier{Store: s, URL: down.URL, Committed: db.Committed, Breaker: b, MaxAttempts: 100})
	first, second := appointmentWith(t, s, 7, 8), appointmentWith(t, s, 9)
	waitFor(t, "the breaker to open", func() bool { return b.State() == "open" })
	stop()
	tried := len(down.Calls())
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, db = openMailStore(t, url)
	waitFor(t, "every entry due", func() bool {
		ids, err := s.DueOutbox(context.Background(), time.Now(), 100)
		return err == nil && len(ids) == 3
	})
	up := newStandIn(t, always(http.StatusAccepted))
	// Nothing is committed before the first delivery, and the periodic
	// sweep is an hour away: only the sweep at start can bring them.
	startNotifier(t, &Notifier{Store: s, URL: up.URL, Committed: db.Committed, Sweep: time.Hour})
	waitFor(t, "every entry sent", settled(t, s, "sent", first, second))

	es := outboxOf(t, s, first, second)
	keys := map[string]int{}
	for _, c := range up.Calls() {
		keys[c.Key]++
	}
	if len(up.Calls()) != len(es) {
		t.Errorf("%d calls after the restart, want %d", len(up.Calls()), len(es))
	}
	attempts := 0
	for _, e := range es {
		if keys[e.Key] != 1 {
			t.Errorf("entry %d posted %d times after the restart, want once", e.ID, keys[e.Key])
		}
		attempts += e.Attempts
	}
	if want := tried + len(es); attempts != want {
		t.Errorf("%d attempts in all, want %d (%d before the restart, one each after)", attempts, want, tried)
	}
}

// TestNotifiersShareTheOutbox: two notifiers on one database, as two
// calendar replicas run them, make one call per entry between them; when
// one is stopped mid-way the other sends the rest.
func TestNotifiersShareTheOutbox(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		s, db := openMailStore(t, url)
		seedMailContacts(t, db)
		other, otherDB := openMailStore(t, url) // the second replica's own handle
		// A slow notifications: a call is still under way when the other
		// replica sweeps.
		srv := newStandIn(t, func(int) int { time.Sleep(5 * time.Millisecond); return http.StatusAccepted })
		stopA := startNotifier(t, &Notifier{Store: s, URL: srv.URL, Committed: db.Committed, Sweep: 20 * time.Millisecond})
		startNotifier(t, &Notifier{Store: other, URL: srv.URL, Committed: otherDB.Committed, Sweep: 20 * time.Millisecond})
		var ids []int64
		for i := range 40 {
			ids = append(ids, appointmentWith(t, s, 7, 8, 9))
			if i == 20 {
				stopA()
			}
		}
		waitFor(t, "every entry sent", settled(t, s, "sent", ids...))
		es := outboxOf(t, s, ids...)
		calls := map[string]int{}
		for _, c := range srv.Calls() {
			calls[c.Key]++
		}
		for _, e := range es {
			if calls[e.Key] != 1 || e.Attempts != 1 {
				t.Errorf("entry %d: %d calls, %d attempts; want one of each", e.ID, calls[e.Key], e.Attempts)
			}
		}
		if len(es) != 120 || len(calls) != 120 {
			t.Fatalf("%d entries, %d keys called; want 120", len(es), len(calls))
		}
	})
}

// TestNotifierHandoff: with the store handing to a notifier, the entries
// of a change are claimed in its transaction and queued at once, then posted
// once each. If that replica dies with them queued, another replica posts
// them once their claim runs out — once each.
func TestNotifierHandoff(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, url string) {
		s, db := openMailStore(t, url)
		seedMailContacts(t, db)
		srv := newStandIn(t, always(http.StatusAccepted))

		// A replica that hands to a notifier that never runs: it died.
		dead := &Notifier{Store: s, URL: srv.URL, Lease: 300 * time.Millisecond, Log: slog.New(slog.DiscardHandler), Metrics: metrics.New(),
			Breaker: breaker.New(breaker.Settings{Name: "notifications", Failures: 1000, Counts: IsPeerFailure})}
		dead.init()
		s.HandTo(dead)
		lost := appointmentWith(t, s, 7, 8)
		if len(dead.ch) != 2 {
			t.Fatalf("%d entries queued, want the 2 written", len(dead.ch))
		}
		if due, err := s.DueOutbox(context.Background(), time.Now(), 10); err != nil || len(due) != 0 {
			t.Fatalf("due while claimed: %v (%v), want none", due, err)
		}

		// A live replica: its own handle on the database, its notifier
		// running, its store handing to it.
		other, otherDB := openMailStore(t, url)
		live := &Notifier{Store: other, URL: srv.URL, Committed: otherDB.Committed, Sweep: 50 * time.Millisecond}
		startNotifier(t, live)
		other.HandTo(live)
		handed := appointmentWith(t, other, 9)
		waitFor(t, "every entry sent", settled(t, other, "sent", lost, handed))
		calls := map[string]int{}
		for _, c := range srv.Calls() {
			calls[c.Key]++
		}
		for _, e := range outboxOf(t, other, lost, handed) {
			if calls[e.Key] != 1 || e.Attempts != 1 {
				t.Errorf("entry %d: %d calls, %d attempts; want one of each", e.ID, calls[e.Key], e.Attempts)
			}
		}
		if len(calls) != 3 {
			t.Errorf("%d keys called, want 3", len(calls))
		}
	})
}
