package calendar

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"syndic/shared/sqldb/sqldbtest"
)

// testService is a calendar started with Run; its feed URL leads nowhere
// unless the test gives one, and contacts are put in its copy with seed.
type testService struct {
	URL string
	db  string
}

func runService(t testing.TB, cfg Config) *testService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = ln
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = sqldbtest.SQLiteURL(t)
	}
	if cfg.ContactsFeedURL == "" {
		cfg.ContactsFeedURL = "http://127.0.0.1:1/feed" // nobody: the follower reports it
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.NotificationsURL == "" {
		cfg.NotificationsURL = "http://127.0.0.1:1" // nobody: requests wait in the outbox
	}
	if cfg.NotifyBuffer == 0 {
		cfg.NotifyBuffer = 1000
	}
	if cfg.NotifyWorkers == 0 {
		cfg.NotifyWorkers = 4
	}
	if cfg.NotifyMaxAttempts == 0 {
		cfg.NotifyMaxAttempts = 10
	}
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
		cfg.LogLevel = "error"
	}
	if cfg.UIUser == "" {
		cfg.UIUser = "admin"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, t.Output()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	s := &testService{URL: "http://" + ln.Addr().String(), db: cfg.DatabaseURL}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("calendar not ready within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seed puts contacts into the service's local copy, as the feed would.
func (s *testService) seed(t testing.TB, cs ...feedContact) {
	t.Helper()
	_, db := openStore(t, s.db)
	for i, c := range cs {
		if c.Version == 0 {
			c.Version = 1
		}
		typ := contactCreated
		if strings.HasPrefix(c.Name, "deleted:") {
			typ, c.Name = contactDeleted, strings.TrimPrefix(c.Name, "deleted:")
		}
		applyContact(t, db, int64(1000+i), typ, c)
	}
}

// do sends body (a string as is, anything else as JSON) and returns the
// status and the answer.
func do(t testing.TB, method, url string, body any, header ...string) (int, []byte, http.Header) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		js, _ := json.Marshal(b)
		r = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, url, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, resp.Header
}
