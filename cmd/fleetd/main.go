// Command fleetd runs fleet's agent, engine and HTTP API on this machine.
//
// SIGTERM and SIGINT stop it; SIGHUP makes it read its configuration again
// (and the API's tokens file and certificates) and restart its agent,
// engine and API with it, in place: the API's
// sockets stay open (requests wait, none is refused), and the agent adopts
// its machine's lease, so no unit stops. The API's own addresses (api_socket,
// api_listen, fleet.socket) change only with a restart of the process.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/seed-a1ce88ea/fleet/fleetd"
)

// version is set at build time with -ldflags "-X main.version=..." (make
// sets it from the VERSION file). A plain go build is "dev": not a semantic
// version, so its engine never records itself as the cluster's.
var version = "dev"

func main() {
	// fleetd tls makes certificates and needs no configuration, so it
	// runs before any is loaded.
	if len(os.Args) > 1 && os.Args[1] == "tls" {
		if err := fleetd.TLSCommand(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "fleetd:", err)
			if errors.Is(err, fleetd.ErrUsage) {
				os.Exit(2)
			}
			os.Exit(1)
		}
		return
	}
	cfg, err := fleetd.LoadConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, fleetd.ErrVersion) {
		fmt.Println("fleetd version", version)
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetd:", err)
		os.Exit(2)
	}
	var level slog.LevelVar
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: &level}))
	setLevel(&level, cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	listeners, err := fleetd.Listen(cfg)
	if err != nil {
		log.Error("fleetd stopped", "err", err)
		os.Exit(1)
	}
	err = run(ctx, cfg, hup, listeners, &level, log)
	if cerr := fleetd.CloseListeners(listeners); cerr != nil {
		log.Warn("close API listeners", "err", cerr)
	}
	if err != nil {
		log.Error("fleetd stopped", "err", err)
		os.Exit(1)
	}
}

// run runs fleetd until ctx ends or it fails, running it again with the
// configuration read anew on every SIGHUP. A configuration that does not
// load is reported and the running one kept.
func run(ctx context.Context, cfg fleetd.Config, hup <-chan os.Signal, listeners []net.Listener, level *slog.LevelVar, log *slog.Logger) error {
	for {
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- fleetd.Run(runCtx, cfg, version, log, fleetd.WithListeners(listeners)) }()
		var next *fleetd.Config
		for next == nil {
			select {
			case err := <-done:
				cancel()
				return err
			case <-hup:
				c, err := fleetd.LoadConfig(os.Args[1:], os.Getenv)
				if err != nil {
					log.Error("reload: configuration not loaded; keeping the running one", "err", err)
					continue
				}
				if err := fleetd.CheckAPISecurity(c, listeners); err != nil {
					log.Error("reload: API certificates, tokens or listeners refused; keeping the running configuration", "err", err)
					continue
				}
				next = &c
			}
		}
		log.Info("reloading configuration")
		cancel()
		if err := <-done; err != nil {
			return err
		}
		if next.APISocket != cfg.APISocket || next.APIListen != cfg.APIListen {
			log.Warn("reload: api_socket and api_listen change only when fleetd restarts")
		}
		cfg = *next
		setLevel(level, cfg)
	}
}

func setLevel(level *slog.LevelVar, cfg fleetd.Config) {
	if cfg.Verbosity > 0 {
		level.Set(slog.LevelDebug)
	} else {
		level.Set(slog.LevelInfo)
	}
}
