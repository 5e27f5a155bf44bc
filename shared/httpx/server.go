package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Timeouts of every syndic server. WriteTimeout leaves room for a feed
// long-poll, which is capped well below it.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 120 * time.Second
	ShutdownTimeout   = 10 * time.Second
)

// Serve serves h on ln until ctx is done, then shuts down gracefully:
// in-flight requests get ShutdownTimeout to finish. onShutdown, if not nil,
// runs when shutdown begins (to release long-polls, say).
func Serve(ctx context.Context, log *slog.Logger, ln net.Listener, h http.Handler, onShutdown func()) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if onShutdown != nil {
		srv.RegisterOnShutdown(onShutdown)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Listen opens the TCP listener for port. With open set false (no
// credentials configured) it binds loopback only.
func Listen(port int, open bool) (net.Listener, error) {
	host := "127.0.0.1"
	if open {
		host = ""
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		return nil, fmt.Errorf("listen on port %d: %w", port, err)
	}
	return ln, nil
}

// Run serves h on ln, or when ln is nil on port (loopback only when access
// has no credentials, with a warning), until ctx is done. The background
// tasks run beside the server; their context ends when shutdown begins,
// and Run returns after they have.
func Run(ctx context.Context, log *slog.Logger, ln net.Listener, port int, access Access, h http.Handler, background ...func(context.Context)) error {
	if ln == nil {
		var err error
		if ln, err = Listen(port, access.Configured()); err != nil {
			return fmt.Errorf("PORT: %w", err)
		}
	}
	WarnAccess(log, access)
	bctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, task := range background {
		wg.Go(func() { task(bctx) })
	}
	defer func() { stop(); wg.Wait() }()
	return Serve(ctx, log, ln, h, stop)
}
