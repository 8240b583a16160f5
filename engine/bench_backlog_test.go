package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// BenchmarkBacklog is the scale benchmark's backlog phase without its
// simulated agents: machines as bare leases, units placed by a first
// engine, which then stops (resigning); a tenth more units are submitted
// while no engine runs, and a new engine with its own etcd client (as a
// fleetd's) starts cold. It reports the new engine's start to its first
// placement written, and placements per second from the first to the last
// (the scale benchmark's backlog rate). etcd fsyncs, as in production.
//
//	go test ./engine/ -run '^$' -bench BenchmarkBacklog -benchtime 3x -timeout 40m -v
func BenchmarkBacklog(b *testing.B) {
	for _, tc := range []struct{ machines, units int }{
		{1000, 10000},
		{10000, 100000},
	} {
		b.Run(fmt.Sprintf("%dm_%du", tc.machines, tc.units), func(b *testing.B) {
			endpoints := benchEtcd(b, true)
			cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				b.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			reg := registry.New(cli, registry.WithRequestTimeout(time.Minute))
			registerBare(b, ctx, reg, tc.machines)
			// Each pass adds its backlog to what earlier passes placed
			// (at most 10 passes).
			all := benchUnits(b, 2*tc.units)
			placeWith(b, ctx, cli, reg, all[:tc.units])
			next := tc.units
			var first, rate time.Duration
			var n int
			for b.Loop() {
				backlog := all[next : next+tc.units/10]
				next += len(backlog)
				f, d := runBacklog(b, ctx, cli, reg, backlog)
				first += f
				rate += d
				n += len(backlog)
			}
			b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms-start-to-first")
			b.ReportMetric(float64(n)/rate.Seconds(), "placements/s")
		})
	}
}

// registerBare registers n machines (leases, no agents), 16 at a time.
func registerBare(b *testing.B, ctx context.Context, reg *registry.Registry, n int) {
	roles := []string{"web", "db", "cache"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p, err := reg.Register(ctx, machine.Machine{ID: fmt.Sprintf("%032x", i+1), Metadata: map[string]string{"role": roles[i%3]}}, 60*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = err
				return
			}
			b.Cleanup(p.Close)
		})
	}
	wg.Wait()
	if failed != nil {
		b.Fatal(failed)
	}
}

// createUnits submits units in batch transactions.
func createUnits(b *testing.B, ctx context.Context, reg *registry.Registry, units []benchUnit) {
	news := make([]registry.NewUnit, len(units))
	for i, u := range units {
		news[i] = registry.NewUnit{Unit: u.u, Body: u.body}
	}
	for _, err := range reg.CreateUnits(ctx, news) {
		if err != nil {
			b.Fatal(err)
		}
	}
}

// placeWith has an engine place units and stops it when all are placed.
func placeWith(b *testing.B, ctx context.Context, cli *clientv3.Client, reg *registry.Registry, units []benchUnit) {
	_, rev, err := reg.Placements(ctx)
	if err != nil {
		b.Fatal(err)
	}
	_, all := countNamed(ctx, reg, rev, units)
	stop := runNamedEngine(ctx, cli, "base", nil)
	createUnits(b, ctx, reg, units)
	select {
	case <-all:
	case <-ctx.Done():
		b.Fatal("base units not all placed")
	}
	stop()
}

// runBacklog submits backlog with no engine running, starts one and returns
// its start to first placement and its first to last placement.
func runBacklog(b *testing.B, ctx context.Context, cli *clientv3.Client, reg *registry.Registry, backlog []benchUnit) (first, span time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	createUnits(b, ctx, reg, backlog)
	_, rev, err := reg.Placements(ctx)
	if err != nil {
		b.Fatal(err)
	}
	firstAt, lastAt := countNamed(ctx, reg, rev, backlog)
	logf, err := os.Create(filepath.Join(b.TempDir(), "engine.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	ecli, err := clientv3.New(clientv3.Config{Endpoints: cli.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer ecli.Close()
	b.StartTimer()
	start := time.Now()
	stop := runNamedEngine(ctx, ecli, "backlog", slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	var f, l time.Time
	select {
	case f = <-firstAt:
	case <-ctx.Done():
		b.Fatal("no backlog placement")
	}
	select {
	case l = <-lastAt:
	case <-ctx.Done():
		b.Fatal("backlog not all placed")
	}
	b.StopTimer()
	stop()
	text, _ := os.ReadFile(logf.Name())
	for _, line := range strings.Split(string(text), "\n") {
		if strings.Contains(line, "plan written") || strings.Contains(line, "cluster read") || strings.Contains(line, "level=WARN") || strings.Contains(line, "became engine leader") {
			b.Log(line)
		}
	}
	b.Logf("backlog %d: start to first %v, first to last %v (%.0f/s)", len(backlog), f.Sub(start).Round(time.Millisecond),
		l.Sub(f).Round(time.Millisecond), float64(len(backlog))/l.Sub(f).Seconds())
	return f.Sub(start), l.Sub(f)
}

func runNamedEngine(ctx context.Context, cli *clientv3.Client, id string, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := engine.New(engine.Config{Registry: registry.New(cli), ID: id, LeaderTTL: 2 * time.Second, ReconcileInterval: time.Minute, Log: log})
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return func() { cancel(); <-done }
}
