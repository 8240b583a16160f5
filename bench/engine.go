package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// engineRole runs the real engine (package engine, as fleetd runs it) as a
// process of its own: one candidate in the leader election.
type engineRole struct {
	Endpoints []string
	ID        string
	LeaderTTL time.Duration
	// NoStandby turns the engine's warm standby off; the benchmark's
	// engines run with it on (fleetd's engine_standby=true).
	NoStandby bool
}

func (r engineRole) run(ctx context.Context) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: r.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("engine %s: etcd client: %w", r.ID, err)
	}
	defer cli.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := engine.New(engine.Config{Registry: registry.New(cli), ID: r.ID, LeaderTTL: r.LeaderTTL, Log: log, Standby: !r.NoStandby})
	sayReady()
	return e.Run(ctx)
}
