// Command notifications runs the notifications service; see notifications -h.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"syndic/notifications"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := notifications.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "notifications:", err)
		os.Exit(1)
	}
}
