package calendar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"syndic/shared/config"
	"syndic/shared/feed"
	"syndic/shared/httpx"
	"syndic/shared/metrics"
	"syndic/shared/sqldb"
)

// Config is the calendar configuration, read from the environment.
type Config struct {
	Port            int           `envconfig:"PORT" default:"8082" desc:"TCP port to listen on"`
	DatabaseURL     string        `envconfig:"DATABASE_URL" default:"sqlite:data/calendar.db" desc:"sqlite:PATH or postgres://user:pass@host/db"`
	ContactsFeedURL string        `envconfig:"CONTACTS_FEED_URL" default:"http://localhost:8081/feed" desc:"the contacts feed to follow (read with API_TOKEN)"`
	PollInterval    time.Duration `envconfig:"POLL_INTERVAL" default:"5s" desc:"time between polls of the feed when the publisher does not long-poll"`
	FeedWait        time.Duration `envconfig:"FEED_WAIT" default:"25s" desc:"long-poll wait asked of the publisher (Prefer: wait); 0 turns long-poll off"`
	config.Common

	// Listener, when set (by tests), is used instead of listening on Port.
	Listener net.Listener `ignored:"true"`
	// Follow, when set (by tests), wraps the follower's configuration.
	Follow func(*feed.FollowerConfig) `ignored:"true"`
}

// Validate checks every variable, naming the one at fault.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, config.ValidatePort(c.Port), config.ValidateDatabaseURL(c.DatabaseURL), c.Common.Validate())
	if u, err := url.Parse(c.ContactsFeedURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("CONTACTS_FEED_URL %q: want an absolute http(s) URL such as http://localhost:8081/feed", c.ContactsFeedURL))
	}
	if c.PollInterval < 10*time.Millisecond || c.PollInterval > time.Hour {
		errs = append(errs, fmt.Errorf("POLL_INTERVAL %s: want 10ms–1h", c.PollInterval))
	}
	if c.FeedWait < 0 || c.FeedWait > time.Minute || c.FeedWait%time.Second != 0 {
		errs = append(errs, fmt.Errorf("FEED_WAIT %s: want whole seconds from 0 to 60s", c.FeedWait))
	}
	return errors.Join(errs...)
}

// Main reads the configuration from the environment (or prints it for -h)
// and runs the service until ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	if err := config.Load("calendar", args, stdout, &cfg); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return nil
		}
		return err
	}
	return Run(ctx, cfg, stdout)
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
	db, err := sqldb.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer db.Close()
	store, err := NewSQLStore(ctx, db)
	if err != nil {
		return err
	}
	m := metrics.New()
	fc := feed.FollowerConfig{
		Name:         "contacts",
		URL:          cfg.ContactsFeedURL,
		Authorize:    authorize(cfg.Common),
		Client:       &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 90 * time.Second}},
		DB:           db,
		Apply:        applyContactEvent,
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
	access := httpx.Access{Token: cfg.APIToken, User: cfg.UIUser, Password: cfg.UIPassword}
	h, err := NewServer(log, store, db, follower.Status, m, access, cfg.PublicBase())
	if err != nil {
		return err
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = httpx.Listen(cfg.Port, access.Configured()); err != nil {
			return fmt.Errorf("PORT: %w", err)
		}
	}
	httpx.WarnAccess(log, access)

	fctx, stopFollowing := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { follower.Run(fctx) })
	defer func() { stopFollowing(); wg.Wait() }()
	return httpx.Serve(ctx, log, ln, h, stopFollowing)
}

// authorize adds the credentials calendar reads the contacts feed with:
// the shared API_TOKEN, else Basic with UI_USER/UI_PASSWORD.
func authorize(c config.Common) func(*http.Request) {
	return func(r *http.Request) {
		switch {
		case c.APIToken != "":
			r.Header.Set("Authorization", "Bearer "+c.APIToken)
		case c.UIPassword != "":
			r.SetBasicAuth(c.UIUser, c.UIPassword)
		}
	}
}
