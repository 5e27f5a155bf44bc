// Command contacts runs the contacts service; see contacts -h.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"syndic/contacts"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := contacts.Main(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "contacts:", err)
		os.Exit(1)
	}
}
