package calendar

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"syndic/shared/config"
	"syndic/shared/servicetest"
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
	// Fast timings (the test tags); everything else as the environment's defaults.
	if err := config.DefaultsForTests(&cfg); err != nil {
		t.Fatal(err)
	}
	svc := servicetest.Start(t, "", func(ctx context.Context, ln net.Listener) error {
		cfg.Listener = ln
		return Run(ctx, cfg, t.Output())
	})
	return &testService{URL: svc.URL, db: cfg.DatabaseURL}
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
	req, err := servicetest.NewRequest(method, url, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	resp, data, err := servicetest.Send(http.DefaultClient, req)
	if resp == nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data, resp.Header
}
