package calendar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"time"

	"syndic/shared/breaker"
	"syndic/shared/config"
	"syndic/shared/feed"
	"syndic/shared/httpx"
	"syndic/shared/metrics"
	"syndic/shared/retry"
	"syndic/shared/sqldb"
	"syndic/shared/view"
)

// Config is the calendar configuration, read from the environment.
type Config struct {
	Port            int           `envconfig:"PORT" default:"8082" desc:"TCP port to listen on"`
	DatabaseURL     string        `envconfig:"DATABASE_URL" default:"sqlite:data/calendar.db" desc:"sqlite:PATH or postgres://user:pass@host/db"`
	ContactsFeedURL string        `envconfig:"CONTACTS_FEED_URL" default:"http://localhost:8081/feed" desc:"the contacts feed to follow (read with API_TOKEN)"`
	PollInterval    time.Duration `envconfig:"POLL_INTERVAL" default:"5s" desc:"time between polls of the feed when the publisher does not long-poll"`
	FeedWait        time.Duration `envconfig:"FEED_WAIT" default:"25s" desc:"long-poll wait asked of the publisher (Prefer: wait); 0 turns long-poll off"`
	FeedStart       string        `envconfig:"FEED_START" default:"snapshot" test:"snapshot" desc:"where a new copy of contacts starts: snapshot (the feed's snapshot of every contact, then the events after it; the archives from the oldest when the feed links no snapshot) or beginning (replay every archive page)"`
	FollowerID      string        `envconfig:"FOLLOWER_ID" desc:"this replica's name in the follower lease (e.g. $DYNO); a replica restarted under the same name takes its lease back at once; empty: host, pid and a random suffix"`
	FollowerLease   time.Duration `envconfig:"FOLLOWER_LEASE" default:"5s" desc:"how long the follower lease lasts unless renewed: how soon a standby replica takes over from one that died"`

	NotificationsURL  string        `envconfig:"NOTIFICATIONS_URL" default:"http://localhost:8083" desc:"the notifications service invitations are sent through (with API_TOKEN)"`
	MailFrom          string        `envconfig:"MAIL_FROM" default:"syndic <noreply@syndic.localhost>" desc:"the sender of the invitations (notifications' MAIL_FROM): every event's ORGANIZER, so replies reach it"`
	NotifyBuffer      int           `envconfig:"NOTIFY_BUFFER" default:"1000" desc:"capacity of the channel between the outbox and the notify workers"`
	NotifyWorkers     int           `envconfig:"NOTIFY_WORKERS" default:"4" desc:"concurrent calls to notifications"`
	NotifyMaxAttempts int           `envconfig:"NOTIFY_MAX_ATTEMPTS" default:"10" desc:"failed calls before a notification request is marked failed"`
	NotifyRetryMin    time.Duration `envconfig:"NOTIFY_RETRY_MIN" default:"1s" test:"10ms" desc:"first retry delay; doubles each time, with jitter"`
	NotifyRetryMax    time.Duration `envconfig:"NOTIFY_RETRY_MAX" default:"5m" test:"200ms" desc:"longest retry delay"`
	NotifySweep       time.Duration `envconfig:"NOTIFY_SWEEP" default:"5s" test:"100ms" desc:"how often the outbox is swept for requests the channel had no room for"`
	BreakerFailures   int           `envconfig:"BREAKER_FAILURES" default:"5" test:"3" desc:"consecutive failed calls to notifications that open the circuit breaker"`
	BreakerOpenFor    time.Duration `envconfig:"BREAKER_OPEN_FOR" default:"10s" test:"200ms" desc:"how long the breaker stays open before a probe"`
	config.Common

	// Listener, when set (by tests), is used instead of listening on Port.
	Listener net.Listener `ignored:"true"`
	// Follow, when set (by tests), wraps the follower's configuration.
	Follow func(*feed.FollowerConfig) `ignored:"true"`
}

// links are the services' pages linked from every page: the configured
// ones, else contacts' and notifications' derived from the URLs calendar
// calls them at (right when, as with make run, those are public too).
func (c Config) links() view.Links {
	l := c.Links()
	origin := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			return ""
		}
		return u.Scheme + "://" + u.Host
	}
	if l.Contacts == "" {
		l.Contacts = origin(c.ContactsFeedURL)
	}
	if l.Notifications == "" {
		l.Notifications = origin(c.NotificationsURL)
	}
	if l.Calendar == "" {
		l.Calendar = "/"
	}
	return l
}

// Validate checks every variable, naming the one at fault.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, config.ValidatePort(c.Port), config.ValidateDatabaseURL(c.DatabaseURL), c.Common.Validate())
	if u, err := url.Parse(c.ContactsFeedURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("CONTACTS_FEED_URL %q: want an absolute http(s) URL such as http://localhost:8081/feed", config.Redact(c.ContactsFeedURL)))
	}
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		errs = append(errs, fmt.Errorf("MAIL_FROM %q: want an address such as \"syndic <calendar@example.org>\": %v", c.MailFrom, err))
	}
	if c.PollInterval < 10*time.Millisecond || c.PollInterval > time.Hour {
		errs = append(errs, fmt.Errorf("POLL_INTERVAL %s: want 10ms–1h", c.PollInterval))
	}
	if c.FollowerLease < 300*time.Millisecond || c.FollowerLease > 10*time.Minute {
		errs = append(errs, fmt.Errorf("FOLLOWER_LEASE %s: want 300ms–10m", c.FollowerLease))
	}
	if c.FeedWait < 0 || c.FeedWait > time.Minute || c.FeedWait%time.Second != 0 {
		errs = append(errs, fmt.Errorf("FEED_WAIT %s: want whole seconds from 0 to 60s", c.FeedWait))
	}
	if c.FeedStart != feed.StartSnapshot && c.FeedStart != feed.StartBeginning {
		errs = append(errs, fmt.Errorf("FEED_START %q: want %s or %s", c.FeedStart, feed.StartSnapshot, feed.StartBeginning))
	}
	if u, err := url.Parse(c.NotificationsURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("NOTIFICATIONS_URL %q: want an absolute http(s) URL such as http://localhost:8083", config.Redact(c.NotificationsURL)))
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"NOTIFY_BUFFER", c.NotifyBuffer}, {"NOTIFY_WORKERS", c.NotifyWorkers}, {"NOTIFY_MAX_ATTEMPTS", c.NotifyMaxAttempts}, {"BREAKER_FAILURES", c.BreakerFailures}} {
		if v.n < 1 {
			errs = append(errs, fmt.Errorf("%s %d: want 1 or more", v.name, v.n))
		}
	}
	if c.NotifyRetryMin <= 0 || c.NotifyRetryMax < c.NotifyRetryMin {
		errs = append(errs, fmt.Errorf("NOTIFY_RETRY_MIN %s, NOTIFY_RETRY_MAX %s: want 0 < NOTIFY_RETRY_MIN ≤ NOTIFY_RETRY_MAX", c.NotifyRetryMin, c.NotifyRetryMax))
	}
	for _, v := range []struct {
		name string
		d    time.Duration
	}{{"NOTIFY_SWEEP", c.NotifySweep}, {"BREAKER_OPEN_FOR", c.BreakerOpenFor}} {
		if v.d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: want a positive duration", v.name, v.d))
		}
	}
	return errors.Join(errs...)
}

// Main reads the configuration from the environment (or prints it for -h)
// and runs the service until ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return config.Main("calendar", args, stdout, func(cfg Config) error { return Run(ctx, cfg, stdout) })
}

// Run runs the calendar service with cfg until ctx is done, logging JSON
// lines to stdout.
func Run(ctx context.Context, cfg Config, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := config.Logger(stdout, "calendar", cfg.LogLevel)
	if err != nil {
		return err
	}
	db, err := sqldb.Open(ctx, cfg.DatabaseURL, sqldb.WithLogger(log))
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer db.Close()
	mailBase := cfg.PublicBase()
	if mailBase == "" {
		mailBase = fmt.Sprintf("http://localhost:%d", cfg.Port)
		log.Warn("BASE_URL not set: links in mails point at " + mailBase)
	}
	organizer, _ := mail.ParseAddress(cfg.MailFrom) // checked by Validate
	host := ""                                      // without BASE_URL: this install's own (installHost)
	if cfg.PublicBase() != "" {
		host = uidHost(cfg.PublicBase())
	}
	store, err := NewSQLStore(ctx, db, Mailer{ICal: ICalOptions{BaseURL: mailBase, Host: host, Organizer: organizer}})
	if err != nil {
		return err
	}
	m := metrics.New()
	db.Observe(m)
	access := cfg.Access()
	notifier := &Notifier{
		Store:     store,
		URL:       cfg.NotificationsURL,
		Authorize: access.Authorize,
		Client:    &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.NotifyWorkers}},
		Breaker: breaker.New(breaker.Settings{Name: "notifications", Failures: uint32(cfg.BreakerFailures), OpenFor: cfg.BreakerOpenFor,
			Counts: IsPeerFailure, Log: log, Met: m}),
		Buffer: cfg.NotifyBuffer, Workers: cfg.NotifyWorkers, MaxAttempts: cfg.NotifyMaxAttempts,
		Backoff: retry.Backoff{Min: cfg.NotifyRetryMin, Max: cfg.NotifyRetryMax}, Sweep: cfg.NotifySweep,
		Committed: db.Committed, Log: log, Metrics: m,
	}
	store.HandTo(notifier)
	fc := feed.FollowerConfig{
		Name:         "contacts",
		URL:          cfg.ContactsFeedURL,
		Authorize:    access.Authorize,
		Client:       &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}},
		DB:           db,
		Apply:        ApplyContactEvent,
		Instance:     cfg.FollowerID,
		LeaseTTL:     cfg.FollowerLease,
		Start:        cfg.FeedStart,
		PollInterval: cfg.PollInterval,
		Wait:         cfg.FeedWait,
		Log:          log,
		Metrics:      m,
	}
	if cfg.FeedWait == 0 {
		fc.Wait = -1
	}
	if cfg.Follow != nil {
		cfg.Follow(&fc)
	}
	follower, err := feed.NewFollower(ctx, fc)
	if err != nil {
		return err
	}
	h, err := NewServer(log, store, db, follower.Status, m, access, ICalOptions{BaseURL: cfg.PublicBase(), Host: store.UIDHost(), Organizer: organizer}, cfg.links())
	if err != nil {
		return err
	}
	return httpx.Run(ctx, log, cfg.Listener, cfg.Port, access, h, follower.Run, notifier.Run)
}
