// Package config reads a service's configuration from the environment
// (twelve-factor) with envconfig, prints it for -h, and builds the logger.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"syndic/shared/httpx"
	"syndic/shared/view"

	"github.com/kelseyhightower/envconfig"
)

// ErrHelp is returned by Load after it printed the usage for -h.
var ErrHelp = flag.ErrHelp

// Common is the configuration every service shares; services embed it.
type Common struct {
	BaseURL    string `envconfig:"BASE_URL" desc:"public URL used in absolute links (feeds, mail); empty derives it from each request, honouring X-Forwarded-Proto/X-Forwarded-Host"`
	LogLevel   string `envconfig:"LOG_LEVEL" default:"info" test:"error" desc:"debug, info, warn or error"`
	APIToken   string `envconfig:"API_TOKEN" desc:"bearer token for /api/*, feeds and /metrics (shared by the services); with no credentials at all the service listens on loopback only"`
	UIUser     string `envconfig:"UI_USER" default:"admin" desc:"HTTP Basic user for browsers and feed readers"`
	UIPassword string `envconfig:"UI_PASSWORD" desc:"HTTP Basic password; when set the HTML pages require it"`

	ContactsPage      string `envconfig:"CONTACTS_PAGE_URL" desc:"public URL of contacts' pages, linked from every page; empty: calendar derives it from CONTACTS_FEED_URL, the others don't link"`
	CalendarPage      string `envconfig:"CALENDAR_PAGE_URL" desc:"public URL of calendar's pages, linked from every page; empty: not linked"`
	NotificationsPage string `envconfig:"NOTIFICATIONS_PAGE_URL" desc:"public URL of notifications' pages, linked from every page; empty: calendar derives it from NOTIFICATIONS_URL, the others don't link"`
}

// Validate checks the shared variables, naming the one at fault.
func (c Common) Validate() error {
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("BASE_URL %q: want an absolute http(s) URL such as https://contacts.example.org", c.BaseURL)
		}
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return err
	}
	for name, v := range map[string]string{"CONTACTS_PAGE_URL": c.ContactsPage, "CALENDAR_PAGE_URL": c.CalendarPage, "NOTIFICATIONS_PAGE_URL": c.NotificationsPage} {
		if u, err := url.Parse(v); v != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
			return fmt.Errorf("%s %q: want an absolute http(s) URL such as https://calendar.example.org", name, v)
		}
	}
	if strings.ContainsAny(c.UIUser, ":") {
		return errors.New("UI_USER: must not contain ':'")
	}
	return nil
}

// Access returns the credentials the service accepts, and sends to its peers.
func (c Common) Access() httpx.Access {
	return httpx.Access{Token: c.APIToken, User: c.UIUser, Password: c.UIPassword}
}

// Links are the services' page URLs the layout links to.
func (c Common) Links() view.Links {
	return view.Links{Contacts: strings.TrimRight(c.ContactsPage, "/"), Calendar: strings.TrimRight(c.CalendarPage, "/"), Notifications: strings.TrimRight(c.NotificationsPage, "/")}
}

// PublicBase returns BASE_URL without a trailing slash.
func (c Common) PublicBase() string { return strings.TrimRight(c.BaseURL, "/") }

// Redact returns a URL with the password of its user information shown as
// "xxxxx", for messages; anything else comes back as it is.
func Redact(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		return u.Redacted()
	}
	return s
}

// ValidatePort checks a PORT value.
func ValidatePort(port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("PORT %d: want 0–65535", port)
	}
	return nil
}

// ValidateDatabaseURL checks a DATABASE_URL value.
func ValidateDatabaseURL(s string) error {
	switch {
	case strings.HasPrefix(s, "sqlite:") && len(s) > len("sqlite:"):
		return nil
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		if _, err := url.Parse(s); err != nil {
			return errors.New("DATABASE_URL: not a valid postgres:// URL")
		}
		return nil
	}
	return fmt.Errorf("DATABASE_URL %q: want sqlite:PATH or postgres://user:pass@host/db", Redact(s))
}

// Load fills spec from the environment. A variable set to the empty string
// counts as unset, so its default applies. With -h in args it prints every
// variable with its type, default and meaning to stdout and returns ErrHelp.
func Load(name string, args []string, stdout io.Writer, spec any) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: %s\n\n%s is configured through the environment:\n\n", name, name)
			tw := tabwriter.NewWriter(stdout, 1, 0, 2, ' ', 0)
			if err := envconfig.Usagef("", spec, tw, usageFormat); err != nil {
				return err
			}
			tw.Flush()
			return ErrHelp
		}
		return fmt.Errorf("%w (the only flag is -h; configuration comes from the environment)", err)
	}
	var keys bytes.Buffer
	if err := envconfig.Usagef("", spec, &keys, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		return err
	}
	for _, k := range strings.Fields(keys.String()) {
		if v, ok := os.LookupEnv(k); ok && v == "" {
			os.Unsetenv(k)
		}
	}
	if err := envconfig.Process("", spec); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s=%q: not a valid %s", pe.KeyName, pe.Value, pe.TypeName)
		}
		return err
	}
	return nil
}

const usageFormat = "VARIABLE\tTYPE\tDEFAULT\tMEANING\n" +
	"{{range .}}{{usage_key .}}\t{{usage_type .}}\t{{usage_default .}}\t{{usage_description .}}\n{{end}}"

// ParseLevel parses a LOG_LEVEL value.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Logger returns the JSON-lines logger writing to w at level (LOG_LEVEL),
// each line tagged with the service name.
func Logger(w io.Writer, service, level string) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})).With("service", service), nil
}

// Main is the body of every service's Main: it reads C from the
// environment (printing the usage for -h) and hands it to run.
func Main[C any](name string, args []string, stdout io.Writer, run func(C) error) error {
	var cfg C
	if err := Load(name, args, stdout, &cfg); err != nil {
		if errors.Is(err, ErrHelp) {
			return nil
		}
		return err
	}
	return run(cfg)
}
