package contacts

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"syndic/shared/servicetest"
	"syndic/shared/sqldb"
	"syndic/shared/sqldb/sqldbtest"
)

// runService starts the whole service with Run on a loopback port, as
// main would, and returns its base URL once /readyz answers. It stops when
// the test ends.
func runService(t testing.TB, cfg Config) string {
	t.Helper()
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = sqldbtest.SQLiteURL(t)
	}
	if cfg.FeedPageSize == 0 {
		cfg.FeedPageSize = 50
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	if cfg.UIUser == "" {
		cfg.UIUser = "admin"
	}
	return servicetest.Start(t, "", func(ctx context.Context, ln net.Listener) error {
		cfg.Listener = ln
		return Run(ctx, cfg, t.Output())
	}).URL
}

// openStore opens a migrated store on databaseURL.
func openStore(t testing.TB, databaseURL string) (*SQLStore, *sqldb.DB) {
	t.Helper()
	db := servicetest.OpenDB(t, databaseURL)
	store, err := NewSQLStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return store, db
}

// client is the JSON client of a service, with contacts' own helpers.
type client struct{ *servicetest.Client }

func newClient(t testing.TB, base string) *client {
	return &client{servicetest.NewClient(t, base)}
}

// create posts a contact and returns it, failing the test unless 201.
func (c *client) create(in Input) Contact {
	c.T.Helper()
	resp, body := c.Do("POST", "/api/contacts", in)
	if resp.StatusCode != http.StatusCreated {
		c.T.Fatalf("create %v: status = %d, want 201: %s", in, resp.StatusCode, body)
	}
	var out Contact
	if err := json.Unmarshal(body, &out); err != nil {
		c.T.Fatal(err)
	}
	return out
}
