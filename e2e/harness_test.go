package e2e

// The harness every test here shares: the three services started in
// process with servicetest.Start and test settings, the JSON client, and
// the waits and checks more than one file uses.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/notifications"
	"syndic/shared/config"
	"syndic/shared/servicetest"
	"syndic/shared/sqldb/sqldbtest"
)

// service is one running service.
type service = servicetest.Service

func common() config.Common { return config.Common{LogLevel: "warn", UIUser: "admin"} }

// startContacts runs contacts; cfg's zero fields get test defaults.
func startContacts(t testing.TB, addr string, cfg contacts.Config) *service {
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = sqldbtest.SQLiteURL(t)
	}
	if cfg.FeedPageSize == 0 {
		cfg.FeedPageSize = 50
	}
	if cfg.LogLevel == "" {
		cfg.Common = common()
	}
	return servicetest.Start(t, addr, func(ctx context.Context, ln net.Listener) error {
		cfg.Listener = ln
		return contacts.Run(ctx, cfg, io.Discard)
	})
}

// startCalendar runs calendar following feedURL.
func startCalendar(t testing.TB, addr, feedURL string, cfg calendar.Config) *service {
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = sqldbtest.SQLiteURL(t)
	}
	cfg.ContactsFeedURL = feedURL
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	if cfg.FeedWait == 0 {
		cfg.FeedWait = 25 * time.Second
	}
	if cfg.NotificationsURL == "" {
		cfg.NotificationsURL = "http://127.0.0.1:1" // nobody: requests wait in the outbox
	}
	if cfg.LogLevel == "" {
		cfg.Common = common()
	}
	if err := config.DefaultsForTests(&cfg); err != nil {
		t.Fatal(err)
	}
	return servicetest.Start(t, addr, func(ctx context.Context, ln net.Listener) error {
		cfg.Listener = ln
		return calendar.Run(ctx, cfg, io.Discard)
	})
}

// startNotifications runs notifications on addr ("" for a new port);
// cfg.SMTPURL must be set (a smtptest server's URL). Its other zero fields
// get test values: SQLite in t's temp dir, fast retries (10–200 ms), a
// breaker that opens for 200 ms, logs at error level.
func startNotifications(t testing.TB, addr string, cfg notifications.Config) *service {
	t.Helper()
	if cfg.SMTPURL == "" && cfg.Sender == nil {
		t.Fatal("startNotifications: set SMTPURL, or the mails go nowhere")
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = sqldbtest.SQLiteURL(t)
	}
	if cfg.LogLevel == "" {
		cfg.Common = common()
		cfg.LogLevel = "error"
	}
	if err := config.DefaultsForTests(&cfg); err != nil {
		t.Fatal(err)
	}
	return servicetest.Start(t, addr, func(ctx context.Context, ln net.Listener) error {
		cfg.Listener = ln
		return notifications.Run(ctx, cfg, io.Discard)
	})
}

// api is the JSON client of one service (Call, Must, Do).
type api = servicetest.Client

func newAPI(t testing.TB, base string) *api {
	return &api{T: t, Base: base, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// freshClient opens a connection per request: a restarted service never
// meets a stale pooled connection of ours, and our idle connections never
// hold up its graceful shutdown.
func freshClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// freshAPI is newAPI with freshClient.
func freshAPI(t testing.TB, base string) *api {
	return &api{T: t, Base: base, HTTP: freshClient()}
}

// send makes one request with a JSON body (nil for none) and returns the
// status, Content-Type and body; err is a transport failure, including a
// body cut short.
func send(c *http.Client, method, url string, body any, header ...string) (status int, ctype string, data []byte, err error) {
	req, err := servicetest.NewRequest(method, url, body, header...)
	if err != nil {
		return 0, "", nil, err
	}
	resp, data, err := servicetest.Send(c, req)
	if resp == nil {
		return 0, "", nil, err
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), data, err
}

// request sends one request (body of content type ctype unless ctype is
// "") with the changes in set (nil ones skipped), and returns the answer
// with its body read.
func request(t testing.TB, c *http.Client, method, u, ctype, body string, set ...func(*http.Request)) (*http.Response, string) {
	t.Helper()
	var b any
	if body != "" || ctype != "" {
		b = body
	}
	req, err := servicetest.NewRequest(method, u, b)
	if err != nil {
		t.Fatal(err)
	}
	if ctype == "" {
		req.Header.Del("Content-Type")
	} else {
		req.Header.Set("Content-Type", ctype)
	}
	for _, f := range set {
		if f != nil {
			f(req)
		}
	}
	resp, data, err := servicetest.Send(c, req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	return resp, string(data)
}

// pollUntil polls cond until it holds, failing t after timeout.
func pollUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	servicetest.Poll(t, timeout, what, cond)
}

// metrics returns the samples of a service's /metrics by name with labels,
// as in `syndic_breaker_state{peer="notifications"}`.
func metrics(t testing.TB, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: status = %d", base, resp.StatusCode)
	}
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m, err := servicetest.Metrics(page)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// addAda creates Ada Lovelace (ada@example.org) in contacts and waits
// until calendar (kapi) holds her as its one contact.
func addAda(t testing.TB, capi, kapi *api) contact {
	t.Helper()
	var ada contact
	capi.Must(201, "POST", "/api/contacts", map[string]string{"name": "Ada Lovelace", "email": "ada@example.org"}, &ada)
	waitContacts(t, kapi, 1)
	return ada
}

// inviteNextWeek creates an hour's appointment called title a week from
// now, on the hour, with participants.
func inviteNextWeek(kapi *api, title string, participants ...int64) {
	kapi.T.Helper()
	when := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Hour)
	kapi.Must(201, "POST", "/api/appointments", map[string]any{"title": title, "starts_at": when.Format(time.RFC3339),
		"ends_at": when.Add(time.Hour).Format(time.RFC3339), "participants": participants}, nil)
}

type syncStatus struct {
	CheckpointSeq int64  `json:"checkpoint_seq"`
	HeadSeq       int64  `json:"head_seq"`
	Lag           int64  `json:"lag"`
	LastError     string `json:"last_error"`
	FailingSeq    int64  `json:"failing_seq"`
	Errors        int64  `json:"errors"`
}

// waitSync polls calendar's /api/sync until cond holds.
func waitSync(t testing.TB, cal *api, timeout time.Duration, cond func(syncStatus) bool) syncStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var s syncStatus // fresh each time: cleared fields are omitted
		cal.Must(200, "GET", "/api/sync", nil, &s)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("sync status %+v after %v", s, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func contactPath(id int64) string { return fmt.Sprintf("/api/contacts/%d", id) }
