package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"syndic/calendar"
	"syndic/contacts"
	"syndic/shared/config"
	"syndic/shared/servicetest"
	"syndic/shared/sqldb/sqldbtest"
)

// service is one running service.
type service = servicetest.Service

// start runs run on addr ("" for a new loopback port) until stopped or the
// test ends, and waits for /readyz.
func start(t testing.TB, addr string, run func(ctx context.Context, ln net.Listener) error) *service {
	t.Helper()
	return servicetest.Start(t, addr, run)
}

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
	return start(t, addr, func(ctx context.Context, ln net.Listener) error {
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
	// Fast timings for tests; everything else as the environment's defaults.
	if cfg.NotifyRetryMin == 0 {
		cfg.NotifyRetryMin, cfg.NotifyRetryMax = 10*time.Millisecond, 200*time.Millisecond
	}
	if cfg.NotifySweep == 0 {
		cfg.NotifySweep = 100 * time.Millisecond
	}
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 3
	}
	if cfg.BreakerOpenFor == 0 {
		cfg.BreakerOpenFor = 200 * time.Millisecond
	}

	if cfg.LogLevel == "" {
		cfg.Common = common()
	}
	if err := config.Defaults(&cfg); err != nil {
		t.Fatal(err)
	}
	return start(t, addr, func(ctx context.Context, ln net.Listener) error {
		cfg.Listener = ln
		return calendar.Run(ctx, cfg, io.Discard)
	})
}

// api is a JSON client of one service.
type api struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newAPI(t testing.TB, base string) *api {
	return &api{t: t, base: base, c: &http.Client{Timeout: 30 * time.Second}}
}

// call sends body as JSON (nil for none), decodes a JSON answer into out
// (nil to ignore), and returns the status.
func (a *api) call(method, path string, body, out any, header ...string) int {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		js, _ := json.Marshal(body)
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	if resp.StatusCode >= 400 && out != nil {
		a.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(data)))
	}
	return resp.StatusCode
}

// must is call that fails the test unless the status is want.
func (a *api) must(want int, method, path string, body, out any, header ...string) {
	a.t.Helper()
	if got := a.call(method, path, body, out, header...); got != want {
		a.t.Fatalf("%s %s: status %d, want %d", method, path, got, want)
	}
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
		cal.must(200, "GET", "/api/sync", nil, &s)
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
