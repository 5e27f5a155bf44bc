package contacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"syndic/shared/config"
	"syndic/shared/feed"
	"syndic/shared/httpx"
	"syndic/shared/metrics"
	"syndic/shared/sqldb"
)

// Config is the contacts configuration, read from the environment.
type Config struct {
	Port            int    `envconfig:"PORT" default:"8081" desc:"TCP port to listen on"`
	DatabaseURL     string `envconfig:"DATABASE_URL" default:"sqlite:data/contacts.db" desc:"sqlite:PATH or postgres://user:pass@host/db"`
	FeedPageSize    int    `envconfig:"FEED_PAGE_SIZE" default:"50" desc:"events per feed archive page; changing it renumbers the archives"`
	FeedRetainPages int    `envconfig:"FEED_RETAIN_PAGES" default:"0" desc:"keep only the newest N full archive pages: older ones answer 410 Gone pointing at /feed/snapshot, from which a follower that was away longer starts again; 0 keeps every page"`
	ArchiveCache    string `envconfig:"ARCHIVE_CACHE" desc:"who may cache archive pages when credentials are set: private (browsers and followers only; the default) or public (a shared cache in front that checks the same credentials itself)"`
	config.Common

	// Listener, when set (by tests), is used instead of listening on Port.
	Listener net.Listener `ignored:"true"`
}

// Validate checks every variable, naming the one at fault.
func (c Config) Validate() error {
	return errors.Join(
		config.ValidatePort(c.Port),
		config.ValidateDatabaseURL(c.DatabaseURL),
		func() error {
			if c.FeedPageSize < 1 || c.FeedPageSize > 1000 {
				return fmt.Errorf("FEED_PAGE_SIZE %d: want 1–1000", c.FeedPageSize)
			}
			return nil
		}(),
		func() error {
			if c.FeedRetainPages < 0 {
				return fmt.Errorf("FEED_RETAIN_PAGES %d: want 0 (keep every page) or more", c.FeedRetainPages)
			}
			return nil
		}(),
		func() error {
			if c.ArchiveCache != "" && c.ArchiveCache != "private" && c.ArchiveCache != "public" {
				return fmt.Errorf("ARCHIVE_CACHE %q: want private or public", c.ArchiveCache)
			}
			return nil
		}(),
		c.Common.Validate(),
	)
}

// Main reads the configuration from the environment (or prints it for -h)
// and runs the service until ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return config.Main("contacts", args, stdout, func(cfg Config) error { return Run(ctx, cfg, stdout) })
}

// Run runs the contacts service with cfg until ctx is done, logging JSON
// lines to stdout.
func Run(ctx context.Context, cfg Config, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := config.Logger(stdout, "contacts", cfg.LogLevel)
	if err != nil {
		return err
	}
	db, err := sqldb.Open(ctx, cfg.DatabaseURL, sqldb.WithLogger(log))
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	defer db.Close()
	store, err := NewSQLStore(ctx, db)
	if err != nil {
		return err
	}
	m := metrics.New()
	db.Observe(m)
	// On PostgreSQL other replicas write too, and their commits reach this
	// one by NOTIFY a moment later: /feed reads the head on every request, so
	// it never answers from one older than a write already acknowledged.
	var headMaxAge time.Duration
	if db.Dialect == sqldb.Postgres {
		headMaxAge = -1
	}
	pub := feed.NewPublisher(store, feed.Options{
		Title:       "syndic contacts",
		ID:          "urn:syndic:contacts:feed",
		EntryID:     "urn:syndic:contacts:event:",
		Author:      "contacts",
		Path:        "/feed",
		Stylesheet:  "/static/feed.css",
		PageSize:    cfg.FeedPageSize,
		BaseURL:     cfg.PublicBase(),
		Changed:     db.Committed,
		HeadMaxAge:  headMaxAge,
		Credentials: cfg.Access().Configured(),
		SharedCache: cfg.ArchiveCache == "public",
		RetainPages: cfg.FeedRetainPages,
	}, log, m)
	access := cfg.Access()
	links := cfg.Links()
	if links.Contacts == "" {
		links.Contacts = "/"
	}
	h, err := NewServer(log, store, db, pub, m, access, links)
	if err != nil {
		return err
	}
	// When shutdown begins, waiting long-polls are answered at once.
	releaseLongPolls := func(ctx context.Context) { <-ctx.Done(); pub.Close() }
	return httpx.Run(ctx, log, cfg.Listener, cfg.Port, access, h, releaseLongPolls)
}
