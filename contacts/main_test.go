package contacts

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"syndic/shared/servicetest"
	"syndic/shared/sqldb/sqldbtest"
)

func TestMainHelp(t *testing.T) {
	t.Parallel()
	servicetest.CheckHelp(t, Main, "PORT", "DATABASE_URL", "FEED_PAGE_SIZE", "FEED_RETAIN_PAGES", "BASE_URL", "LOG_LEVEL", "API_TOKEN", "UI_USER", "UI_PASSWORD")
}

// TestMainRefusesBadValues: a bad value stops the service at start with a
// message naming the variable.
func TestMainRefusesBadValues(t *testing.T) {
	servicetest.CheckRefuses(t, Main, [][2]string{
		{"PORT", "http"}, {"FEED_PAGE_SIZE", "0"}, {"DATABASE_URL", "mysql://localhost/x"}, {"ARCHIVE_CACHE", "shared"}, {"FEED_RETAIN_PAGES", "-1"},
		{"BASE_URL", "not a url"}, {"LOG_LEVEL", "chatty"},
	}...)
}

// TestLogs: every line on stdout is a JSON object, requests are logged
// with an id, and no secret appears.
func TestLogs(t *testing.T) {
	t.Parallel()
	var out servicetest.Output
	cfg := Config{DatabaseURL: sqldbtest.SQLiteURL(t), FeedPageSize: 50, Common: configCommon("tok-SECRET-1", "pw-SECRET-2")}
	cfg.LogLevel = "debug"
	svc := servicetest.Start(t, "", func(ctx context.Context, ln net.Listener) error {
		cfg.Listener = ln
		return Run(ctx, cfg, &out)
	})
	base := svc.URL
	c := newClient(t, base)
	c.Token = "tok-SECRET-1"
	c.create(Input{Name: "Ada", Email: "ada@example.org"})
	req, _ := http.NewRequest("GET", base+"/?q=secret-query", nil)
	req.SetBasicAuth("admin", "pw-SECRET-2")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	svc.Stop()

	logs := out.String()
	if strings.Contains(logs, "SECRET") {
		t.Errorf("a secret reached the logs:\n%s", logs)
	}
	var requests int
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		if line["msg"] == "request" {
			requests++
			if line["request_id"] == "" || line["status"] == nil {
				t.Errorf("request line without id or status: %v", line)
			}
		}
	}
	if requests < 2 {
		t.Errorf("%d request lines, want at least 2:\n%s", requests, logs)
	}
}
