package calendar

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"syndic/shared/config"
)

func configCommon(token, password string) config.Common {
	return config.Common{APIToken: token, UIUser: "admin", UIPassword: password, LogLevel: "error"}
}

func TestMainHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := Main(context.Background(), []string{"-h"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"PORT", "DATABASE_URL", "CONTACTS_FEED_URL", "POLL_INTERVAL", "FEED_WAIT", "BASE_URL", "LOG_LEVEL", "API_TOKEN", "UI_USER", "UI_PASSWORD"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h lacks %s", v)
		}
	}
}

func TestMainRefusesBadValues(t *testing.T) {
	for name, val := range map[string]string{
		"PORT":              "99999",
		"CONTACTS_FEED_URL": "localhost:8081/feed",
		"POLL_INTERVAL":     "often",
		"FEED_WAIT":         "90s",
		"DATABASE_URL":      "oracle://x",
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(name, val)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := Main(ctx, nil, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), name) {
				t.Fatalf("%s=%q: %v, want an error naming %s", name, val, err, name)
			}
		})
	}
}
