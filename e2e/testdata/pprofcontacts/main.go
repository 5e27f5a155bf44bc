// Command pprofcontacts is contacts with net/http/pprof served on
// $PPROF_ADDR (loopback), for profiling it under BenchmarkFanOut:
//
//	FANOUT_CONTACTS=./testdata/pprofcontacts PPROF_ADDR=127.0.0.1:6060 \
//	  go test -run '^$' -bench 'FanOut/contacts$' -benchtime 6x ./e2e/ &
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=8
//
// It lives in testdata so that `go build ./...` leaves it out.
package main

import (
	"context"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"syndic/contacts"
)

func main() {
	addr := os.Getenv("PPROF_ADDR")
	if addr == "" {
		fmt.Fprintln(os.Stderr, "pprofcontacts: set PPROF_ADDR, e.g. 127.0.0.1:6060")
		os.Exit(2)
	}
	os.Unsetenv("PPROF_ADDR")
	go func() { fmt.Fprintln(os.Stderr, "pprof:", http.ListenAndServe(addr, nil)) }()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := contacts.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "contacts:", err)
		os.Exit(1)
	}
}
