package notifications

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"syndic/shared/config"
	"syndic/shared/servicetest"
	"syndic/shared/sqldb/sqldbtest"
)

// testService is the whole service started with Run, as main would start
// it, on a loopback port.
type testService struct {
	URL   string
	Token string      // sent as a bearer token when set
	Out   *syncBuffer // what Run writes to stdout: logs, and mails without SMTP

	client *http.Client // its own connections, closed at Stop
	svc    *servicetest.Service
}

// runService starts the service with cfg and returns once /readyz answers.
// Unset settings get test values: SQLite in t's temp dir, fast retries
// (10–100 ms), a breaker that opens for 200 ms, logs at error level. With
// cfg.SMTPURL empty (and no Sender) mails go to Out. It stops when t ends.
func runService(t testing.TB, cfg Config) *testService {
	t.Helper()
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = sqldbtest.SQLiteURL(t)
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 100 * time.Millisecond
	}
	// Fast timings (the test tags); everything else as the environment's defaults.
	if err := config.DefaultsForTests(&cfg); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	svc := servicetest.Start(t, "", func(ctx context.Context, ln net.Listener) error {
		cfg.Listener = ln
		return Run(ctx, cfg, out)
	})
	s := &testService{URL: svc.URL, Token: cfg.APIToken, Out: out, client: svc.Client, svc: svc}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service output:\n%s", s.Out.String())
		}
	})
	return s
}

// Stop stops the service and waits for Run to return: a send in progress
// is finished and recorded first. Stopping twice does nothing.
func (s *testService) Stop(t testing.TB) {
	t.Helper()
	s.svc.Stop()
}

// do sends body (a string or []byte as is, anything else as JSON) with
// header pairs, and returns the status, the body and the header.
func (s *testService) do(t testing.TB, method, path string, body any, header ...string) (int, []byte, http.Header) {
	t.Helper()
	c := servicetest.Client{T: t, Base: s.URL, HTTP: s.client, Token: s.Token}
	resp, data := c.Do(method, path, body, header...)
	return resp.StatusCode, data, resp.Header
}

// post posts req under key and returns the status and the notification.
func (s *testService) post(t testing.TB, key string, req Request) (int, Notification) {
	t.Helper()
	status, n, err := s.tryPost(key, req)
	if err != nil {
		t.Fatal(err)
	}
	return status, n
}

// tryPost is post for other goroutines than the test's: it returns its
// error instead of failing the test.
func (s *testService) tryPost(key string, req Request) (int, Notification, error) {
	r, err := servicetest.NewRequest("POST", s.URL+"/api/notifications", req, "Idempotency-Key", key)
	if err != nil {
		return 0, Notification{}, err
	}
	if s.Token != "" {
		r.Header.Set("Authorization", "Bearer "+s.Token)
	}
	resp, body, err := servicetest.Send(s.client, r)
	if resp == nil {
		return 0, Notification{}, fmt.Errorf("POST %q: %w", key, err)
	}
	if err != nil {
		return 0, Notification{}, fmt.Errorf("POST %q: read body: %w", key, err)
	}
	var n Notification
	if resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &n); err != nil {
			return 0, Notification{}, fmt.Errorf("POST %q answer: %w: %s", key, err, body)
		}
	}
	return resp.StatusCode, n, nil
}

// accept posts req under key and fails t unless it is answered 202.
func (s *testService) accept(t testing.TB, key string, req Request) Notification {
	t.Helper()
	status, n := s.post(t, key, req)
	if status != http.StatusAccepted {
		t.Fatalf("POST %q: status = %d, want 202", key, status)
	}
	return n
}

// get returns notification id, failing t unless it is answered 200.
func (s *testService) get(t testing.TB, id int64) Notification {
	t.Helper()
	status, body, _ := s.do(t, "GET", "/api/notifications/"+strconv.FormatInt(id, 10), nil)
	if status != http.StatusOK {
		t.Fatalf("GET notification %d: status = %d: %s", id, status, body)
	}
	var n Notification
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// list returns GET /api/notifications with query (like "?status=sent").
func (s *testService) list(t testing.TB, query string) []Notification {
	t.Helper()
	status, body, _ := s.do(t, "GET", "/api/notifications"+query, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/notifications%s: status = %d: %s", query, status, body)
	}
	var l struct{ Items []Notification }
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// waitFor polls notification id until ok says yes, failing t after timeout.
func (s *testService) waitFor(t testing.TB, id int64, timeout time.Duration, what string, ok func(Notification) bool) Notification {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := s.get(t, id)
		if ok(n) {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("notification %d: not %s within %s: %+v", id, what, timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStatus polls notification id until it has status.
func (s *testService) waitStatus(t testing.TB, id int64, status string, timeout time.Duration) Notification {
	t.Helper()
	return s.waitFor(t, id, timeout, status, func(n Notification) bool { return n.Status == status })
}

// page returns the body of an HTML page.
func (s *testService) page(t testing.TB, path string) string {
	t.Helper()
	status, body, _ := s.do(t, "GET", path, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status = %d", path, status)
	}
	return string(body)
}

// metrics returns the Prometheus samples of /metrics by name with labels,
// as in `syndic_breaker_state{peer="smtp"}`.
func (s *testService) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	status, body, _ := s.do(t, "GET", "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: status = %d", status)
	}
	out, err := servicetest.Metrics(body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitMetric polls /metrics until ok says yes about the sample name.
func (s *testService) waitMetric(t testing.TB, name string, timeout time.Duration, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, found := s.metrics(t)[name]
		if found && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s = %v (present %v) after %s", name, v, found, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openStore opens a migrated store on databaseURL.
func openStore(t testing.TB, databaseURL string) *SQLStore {
	t.Helper()
	db := servicetest.OpenDB(t, databaseURL)
	store, err := NewSQLStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// syncBuffer is a service's stdout, safe for its goroutines.
type syncBuffer = servicetest.Output
