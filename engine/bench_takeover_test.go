package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// BenchmarkTakeover measures a leader's death to the first placement by the
// next one, with and without the warm standby: two engines, each with its
// own etcd client as on two fleetds; every unit placed; then the leader's
// client is closed without resigning (as a SIGKILL leaves it: its session
// lease expires after engine_leader_ttl, 2 s) and 1,000 units are
// submitted at once. Machines are bare leases (no agents), so the figures
// are the engines' and etcd's alone.
//
//	go test ./engine/ -run '^$' -bench BenchmarkTakeover -benchtime 1x
func BenchmarkTakeover(b *testing.B) {
	for _, tc := range []struct {
		machines, units int
	}{
		{1000, 10000},
		{10000, 100000},
	} {
		for _, standby := range []bool{false, true} {
			b.Run(fmt.Sprintf("%dm_%du/standby=%t", tc.machines, tc.units, standby), func(b *testing.B) {
				var first, all time.Duration
				for b.Loop() {
					f, a := runTakeover(b, tc.machines, tc.units, standby)
					first += f
					all += a
				}
				b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms-to-first-placement")
				b.ReportMetric(float64(all.Milliseconds())/float64(b.N), "ms-to-all-placed")
			})
		}
	}
}

// probes is how many single placements measure each engine's requests.
const probes = 20

func runTakeover(b *testing.B, nMachines, nUnits int, standby bool) (first, all time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	endpoints := benchEtcd(b, true)
	// Unary requests per client, to count what each engine asks etcd.
	var counts [3]atomic.Int64
	nextClient := 0
	client := func() *clientv3.Client {
		n := &counts[nextClient]
		nextClient++
		count := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			n.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		})
		cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), DialOptions: []grpc.DialOption{count}})
		if err != nil {
			b.Fatal(err)
		}
		return cli
	}
	cli := client()
	defer cli.Close()
	reg := registry.New(cli, registry.WithRequestTimeout(time.Minute))
	roles := []string{"web", "db", "cache"}
	for i := range nMachines {
		p, err := reg.Register(ctx, machine.Machine{ID: fmt.Sprintf("%032x", i+1), Metadata: map[string]string{"role": roles[i%3]}}, 60*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
	}
	create := func(units []benchUnit) { createUnits(b, ctx, reg, units) }
	units := benchUnits(b, nUnits+1000+probes)
	_, rev, err := reg.Placements(ctx)
	if err != nil {
		b.Fatal(err)
	}
	placed := countPlacements(ctx, reg, rev, nUnits)
	// The engines' logs say where a takeover's time went (catch-up, first
	// plan); they are shown with -v.
	logf, err := os.Create(filepath.Join(b.TempDir(), "engines.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = logf.Close()
		text, _ := os.ReadFile(logf.Name())
		for _, l := range strings.Split(string(text), "\n") {
			if strings.Contains(l, "standby:") || strings.Contains(l, "became engine leader") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				b.Log(l)
			}
		}
	}()
	run := func(id string, cli *clientv3.Client) (stop func()) {
		ectx, cancel := context.WithCancel(ctx)
		e := engine.New(engine.Config{Registry: registry.New(cli), ID: id, LeaderTTL: 2 * time.Second, Standby: standby,
			Log: slog.New(slog.NewTextHandler(logf, nil)).With("engine", id)})
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ectx) }()
		return func() { cancel(); <-done }
	}
	cliA, cliB := client(), client()
	defer cliA.Close()
	defer cliB.Close()
	stopA := run("a", cliA)
	for l, _ := reg.Leader(ctx); l != "a"; l, _ = reg.Leader(ctx) {
		time.Sleep(10 * time.Millisecond)
	}
	stopB := run("b", cliB)
	create(units[:nUnits])
	select {
	case <-placed:
	case <-ctx.Done():
		b.Fatal("placements did not all appear")
	}
	// The standby follows within moments; give it time to have read the
	// cluster and applied the last placements.
	time.Sleep(5 * time.Second)
	_, rev, err = reg.Placements(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer stopA()
	defer stopB()
	// Single placements on the steady cluster: what each engine asks etcd
	// per placement (the leader writes it, a standby follows it).
	if standby {
		before := [2]int64{counts[1].Load(), counts[2].Load()}
		for _, u := range units[nUnits+1000:] {
			_, one := countNamed(ctx, reg, rev, []benchUnit{u})
			create([]benchUnit{u})
			select {
			case <-one:
			case <-ctx.Done():
				b.Fatal("probe not placed")
			}
		}
		time.Sleep(time.Second) // the standby follows the last one
		b.Logf("etcd requests per single placement (%d probes): engine a %.1f, engine b %.1f", probes,
			float64(counts[1].Load()-before[0])/probes, float64(counts[2].Load()-before[1])/probes)
		if _, rev, err = reg.Placements(ctx); err != nil {
			b.Fatal(err)
		}
	}
	late := units[nUnits : nUnits+1000]
	firstPlaced, allPlaced := countNamed(ctx, reg, rev, late)

	// Kill whichever leads now (on a loaded machine the lead may have
	// moved already).
	leader, err := reg.Leader(ctx)
	if err != nil {
		b.Fatal(err)
	}
	victim, stopVictim := cliA, stopA
	if leader == "b" {
		victim, stopVictim = cliB, stopB
	}
	b.StartTimer()
	kill := time.Now()
	_ = victim.Close() // the leader is gone: no resign, its lease expires
	stopped := make(chan struct{})
	go func() { defer close(stopped); stopVictim() }()
	defer func() {
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			b.Error("the killed leader's Run did not return")
		}
	}()
	create(late)
	select {
	case t := <-firstPlaced:
		first = t.Sub(kill)
	case <-ctx.Done():
		b.Fatal("no placement after the takeover")
	}
	select {
	case t := <-allPlaced:
		all = t.Sub(kill)
	case <-ctx.Done():
		b.Fatal("late units not all placed")
	}
	b.StopTimer()
	return first, all
}

// countNamed watches the schedule after rev and sends the time the first of
// units got a placement, and the time all of them had one.
func countNamed(ctx context.Context, reg *registry.Registry, rev int64, units []benchUnit) (first, all <-chan time.Time) {
	f, a := make(chan time.Time, 1), make(chan time.Time, 1)
	want := make(map[string]bool, len(units))
	for _, u := range units {
		want[u.u.Name] = true
	}
	events := reg.WatchPlacements(ctx, rev)
	go func() {
		seen := make(map[string]bool, len(units))
		for ev := range events {
			if ev.Err != nil {
				return
			}
			if ev.Deleted || !want[ev.Value.Name] {
				continue
			}
			if len(seen) == 0 {
				f <- time.Now()
			}
			seen[ev.Value.Name] = true
			if len(seen) == len(want) {
				a <- time.Now()
				return
			}
		}
	}()
	return f, a
}
