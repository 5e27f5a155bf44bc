package calendar

import (
	"testing"

	"syndic/shared/config"
	"syndic/shared/servicetest"
)

func configCommon(token, password string) config.Common {
	return config.Common{APIToken: token, UIUser: "admin", UIPassword: password, LogLevel: "error"}
}

func TestMainHelp(t *testing.T) {
	t.Parallel()
	servicetest.CheckHelp(t, Main, "PORT", "DATABASE_URL", "CONTACTS_FEED_URL", "POLL_INTERVAL", "FEED_WAIT", "FEED_START", "BASE_URL", "LOG_LEVEL", "API_TOKEN", "UI_USER", "UI_PASSWORD")
}

func TestMainRefusesBadValues(t *testing.T) {
	servicetest.CheckRefuses(t, Main, [][2]string{
		{"PORT", "99999"}, {"CONTACTS_FEED_URL", "localhost:8081/feed"}, {"POLL_INTERVAL", "often"},
		{"FEED_WAIT", "90s"}, {"DATABASE_URL", "oracle://x"}, {"FOLLOWER_LEASE", "1ms"}, {"FEED_START", "middle"},
	}...)
}
