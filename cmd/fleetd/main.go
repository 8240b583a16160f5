// Command fleetd runs fleet's agent, engine and HTTP API on this machine.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/seed-a1ce88ea/fleet/fleetd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	cfg, err := fleetd.LoadConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, fleetd.ErrVersion) {
		fmt.Println("fleetd version", version)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetd:", err)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if cfg.Verbosity > 0 {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := fleetd.Run(ctx, cfg, version, log); err != nil {
		log.Error("fleetd stopped", "err", err)
		os.Exit(1)
	}
}
