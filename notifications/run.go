package notifications

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"time"

	"syndic/shared/breaker"
	"syndic/shared/config"
	"syndic/shared/httpx"
	"syndic/shared/metrics"
	"syndic/shared/retry"
	"syndic/shared/sqldb"
)

// Config is the notifications configuration, read from the environment.
type Config struct {
	Port            int           `envconfig:"PORT" default:"8083" desc:"TCP port to listen on"`
	DatabaseURL     string        `envconfig:"DATABASE_URL" default:"sqlite:data/notifications.db" desc:"sqlite:PATH or postgres://user:pass@host/db"`
	SMTPURL         string        `envconfig:"SMTP_URL" desc:"smtp://user:pass@host:port (STARTTLS when offered); empty writes each mail as a JSON line on stdout"`
	MailFrom        string        `envconfig:"MAIL_FROM" default:"syndic <noreply@syndic.localhost>" test:"syndic <noreply@syndic.test>" desc:"From address of the mails"`
	Workers         int           `envconfig:"DELIVERY_WORKERS" default:"4" desc:"mails sent at once"`
	MaxAttempts     int           `envconfig:"MAX_ATTEMPTS" default:"8" desc:"temporary failures (SMTP 4xx, connection errors) before a mail is marked failed"`
	RetryMin        time.Duration `envconfig:"RETRY_MIN" default:"1s" test:"10ms" desc:"first retry delay; doubles each time, with jitter"`
	RetryMax        time.Duration `envconfig:"RETRY_MAX" default:"10m" test:"200ms" desc:"longest retry delay"`
	BreakerFailures int           `envconfig:"BREAKER_FAILURES" default:"5" desc:"consecutive SMTP failures that open the circuit breaker"`
	BreakerOpenFor  time.Duration `envconfig:"BREAKER_OPEN_FOR" default:"30s" test:"200ms" desc:"how long the breaker stays open before a probe"`
	Lease           time.Duration `envconfig:"DELIVERY_LEASE" default:"10s" desc:"how long a worker's claim on a mail lasts unless renewed (it is renewed three times as often while the mail is being sent): after a crash the mail goes out again within this long"`
	config.Common

	// Listener, when set (by tests), is used instead of listening on Port.
	Listener net.Listener `ignored:"true"`
	// Sender, when set (by tests), replaces SMTP or stdout.
	Sender Sender `ignored:"true"`
}

// Validate checks every variable, naming the one at fault.
func (c Config) Validate() error {
	errs := []error{config.ValidatePort(c.Port), config.ValidateDatabaseURL(c.DatabaseURL), c.Common.Validate()}
	if c.SMTPURL != "" {
		if _, err := ParseSMTPURL(c.SMTPURL); err != nil {
			errs = append(errs, err)
		}
	}
	if a, err := mail.ParseAddress(c.MailFrom); err != nil || a.Address == "" {
		errs = append(errs, fmt.Errorf("MAIL_FROM %q: want an address like \"syndic <noreply@example.org>\"", c.MailFrom))
	}
	if c.Workers < 1 || c.Workers > 100 {
		errs = append(errs, fmt.Errorf("DELIVERY_WORKERS %d: want 1–100", c.Workers))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("MAX_ATTEMPTS %d: want 1 or more", c.MaxAttempts))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("RETRY_MIN %s, RETRY_MAX %s: want 0 < RETRY_MIN ≤ RETRY_MAX", c.RetryMin, c.RetryMax))
	}
	if c.BreakerFailures < 1 {
		errs = append(errs, fmt.Errorf("BREAKER_FAILURES %d: want 1 or more", c.BreakerFailures))
	}
	if c.Lease < time.Second {
		errs = append(errs, fmt.Errorf("DELIVERY_LEASE %s: want at least 1s (and more than a send takes)", c.Lease))
	}
	if c.BreakerOpenFor <= 0 {
		errs = append(errs, fmt.Errorf("BREAKER_OPEN_FOR %s: want a positive duration", c.BreakerOpenFor))
	}
	return errors.Join(errs...)
}

// Main reads the configuration from the environment (or prints it for -h)
// and runs the service until ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return config.Main("notifications", args, stdout, func(cfg Config) error { return Run(ctx, cfg, stdout) })
}

// Run runs the notifications service with cfg until ctx is done.
func Run(ctx context.Context, cfg Config, stdout io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, err := config.Logger(stdout, "notifications", cfg.LogLevel)
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
	sender := cfg.Sender
	switch {
	case sender != nil:
	case cfg.SMTPURL != "":
		if sender, err = ParseSMTPURL(cfg.SMTPURL); err != nil {
			return err
		}
	default:
		log.Warn("no SMTP_URL: mails are written to stdout as JSON lines")
		sender = &StdoutSender{W: stdout}
	}
	m := metrics.New()
	db.Observe(m)
	m.GaugeFunc("notifications_pending", "Notifications not yet sent or failed (in the shared database).", func() int64 {
		n, _ := store.Pending(context.Background())
		return n
	})
	br := breaker.New(breaker.Settings{Name: "smtp", Failures: uint32(cfg.BreakerFailures), OpenFor: cfg.BreakerOpenFor, Counts: Temporary, Log: log, Met: m})
	delivery := &Delivery{Store: store, Sender: sender, Breaker: br, From: cfg.MailFrom, Workers: cfg.Workers,
		MaxAttempts: cfg.MaxAttempts, Backoff: retry.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax}, Lease: cfg.Lease, Committed: db.Committed, Log: log, Metrics: m}
	access := cfg.Access()
	links := cfg.Links()
	if links.Notifications == "" {
		links.Notifications = "/"
	}
	h, err := NewServer(log, store, db, m, access, br.State, links)
	if err != nil {
		return err
	}
	return httpx.Run(ctx, log, cfg.Listener, cfg.Port, access, h, delivery.Run)
}
