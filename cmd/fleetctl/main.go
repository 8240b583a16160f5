package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/seed-a1ce88ea/fleet/fleetctl"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version = "dev"

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := fleetctl.NewCommand(os.Stdout, os.Stderr, os.Getenv, fleetctl.WithVersion(version), fleetctl.WithStdin(os.Stdin))
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return fleetctl.ExitOK
	}
	fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	if fleetctl.IsUsage(err) {
		fmt.Fprintln(os.Stderr, "Run 'fleetctl help' for usage.")
	}
	return fleetctl.ExitCode(err)
}
