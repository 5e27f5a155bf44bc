package contacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
	db, err := sqldb.Open(context.Background(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := NewSQLStore(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return store, db
}

// client makes JSON requests against a service.
type client struct {
	t     testing.TB
	base  string
	token string
	http  *http.Client
}

func newClient(t testing.TB, base string) *client {
	return &client{t: t, base: base, http: &http.Client{Timeout: 60 * time.Second}}
}

// do sends body (a string is sent as is, anything else as JSON) and returns
// the response with its body read.
func (c *client) do(method, path string, body any, header ...string) (*http.Response, []byte) {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, c.base+path, r)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// create posts a contact and returns it, failing the test unless 201.
func (c *client) create(in Input) Contact {
	c.t.Helper()
	resp, body := c.do("POST", "/api/contacts", in)
	if resp.StatusCode != http.StatusCreated {
		c.t.Fatalf("create %v: status = %d, want 201: %s", in, resp.StatusCode, body)
	}
	var out Contact
	if err := json.Unmarshal(body, &out); err != nil {
		c.t.Fatal(err)
	}
	return out
}
