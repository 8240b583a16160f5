package engine_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdserver"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// BenchmarkEngine measures placements written to a real embedded etcd per
// second, end to end: the engine leader reads units (and their bodies),
// decides, and writes the schedule in fenced 128-op transactions.
//
//   - cold: the units are in etcd when the engine starts (a leader taking
//     over a cluster nobody scheduled): from Run to the last placement in
//     etcd, election and full read included.
//   - stream: the engine runs while 32 clients submit the units; from the
//     first submit to the last placement. The engine keeps up with the
//     submissions, so this is bounded by how fast etcd takes them; lag is
//     how long after the last submit the last placement lands.
//
// Variants with fsync run etcd as in production (fsync on every commit);
// the others skip fsync, as the tests do.
func BenchmarkEngine(b *testing.B) {
	for _, tc := range []struct {
		mode            string
		machines, units int
		fsync           bool
	}{
		{"cold", 100, 10000, false},
		{"cold", 1000, 20000, false},
		{"cold", 100, 10000, true},
		{"stream", 100, 10000, false},
		{"stream", 100, 10000, true},
	} {
		name := fmt.Sprintf("%s/%dm_%du", tc.mode, tc.machines, tc.units)
		if tc.fsync {
			name += "/fsync"
		}
		b.Run(name, func(b *testing.B) {
			var total, lag time.Duration
			for b.Loop() {
				took, l := runEngineBench(b, tc.mode, tc.machines, tc.units, tc.fsync)
				total += took
				lag += l
			}
			b.ReportMetric(float64(tc.units*b.N)/total.Seconds(), "placements/s")
			if tc.mode == "stream" {
				b.ReportMetric(float64(lag.Milliseconds())/float64(b.N), "lag-ms")
			}
		})
	}
}

// runEngineBench runs one pass; the benchmark timer runs only while the
// engine works (setup and teardown are not timed), so ns/op is the time of
// one pass.
func runEngineBench(b *testing.B, mode string, nMachines, nUnits int, fsync bool) (took, lag time.Duration) {
	b.StopTimer()
	defer b.StartTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	endpoints := benchEtcd(b, fsync)
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	reg := registry.New(cli)
	roles := []string{"web", "db", "cache"}
	for i := range nMachines {
		p, err := reg.Register(ctx, machine.Machine{ID: fmt.Sprintf("%032x", i+1), Metadata: map[string]string{"role": roles[i%3]}}, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
	}
	units := benchUnits(b, nUnits)
	_, rev, err := reg.Placements(ctx)
	if err != nil {
		b.Fatal(err)
	}
	placed := countPlacements(ctx, reg, rev, nUnits)

	start := time.Now()
	var lastSubmit time.Time
	switch mode {
	case "cold":
		submitAll(b, ctx, reg, units)
		b.StartTimer()
		start = time.Now()
		stop := runBenchEngine(ctx, reg)
		defer stop()
	case "stream":
		stop := runBenchEngine(ctx, reg)
		defer stop()
		for e := time.Now(); time.Since(e) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
			if l, _ := reg.Leader(ctx); l != "" {
				break
			}
		}
		b.StartTimer()
		start = time.Now()
		submitAll(b, ctx, reg, units)
		lastSubmit = time.Now()
	}
	select {
	case done := <-placed:
		b.StopTimer()
		took = done.Sub(start)
		if !lastSubmit.IsZero() {
			lag = done.Sub(lastSubmit)
		}
	case <-ctx.Done():
		b.Fatal("placements did not all appear")
	}
	return took, lag
}

func runBenchEngine(ctx context.Context, reg *registry.Registry) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	e := engine.New(engine.Config{Registry: reg, ID: "bench", ReconcileInterval: time.Minute})
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return func() { cancel(); <-done }
}

// benchEtcd starts an embedded etcd, with or without fsync.
func benchEtcd(b *testing.B, fsync bool) []string {
	if !fsync {
		return etcdtest.Start(b).Endpoints
	}
	// etcdtest skips fsync; production does not.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := etcdserver.Start(ctx, etcdserver.Config{DataDir: b.TempDir(),
		ClientURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(b))}, PeerURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(b))})
	if err == nil {
		b.Cleanup(s.Close)
		return s.Endpoints()
	}
	b.Skipf("etcd with fsync: %v", err)
	return nil
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type benchUnit struct {
	u    registry.Unit
	body string
}

// benchUnits builds units with distinct bodies (the engine reads each), a
// quarter of them with metadata.
func benchUnits(b *testing.B, n int) []benchUnit {
	out := make([]benchUnit, n)
	for i := range out {
		text := fmt.Sprintf("[Unit]\nDescription=bench unit %d\n[Service]\nExecStart=/bin/sleep 1000\n", i)
		if i%4 == 0 {
			text += "[X-Fleet]\nMachineMetadata=role=web\n"
		}
		f, err := unit.ParseString(text)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = benchUnit{u: registry.Unit{Name: fmt.Sprintf("bench-%06d.service", i), Hash: f.Hash().String(), DesiredState: registry.StateLaunched}, body: f.String()}
	}
	return out
}

// submitAll submits units from 32 concurrent clients, as many fleetctl
// users would.
func submitAll(b *testing.B, ctx context.Context, reg *registry.Registry, units []benchUnit) {
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	next := make(chan benchUnit)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range next {
				if err := reg.CreateUnit(ctx, u.u, u.body, false); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, u := range units {
		next <- u
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// countPlacements watches the schedule and sends the time the n-th distinct
// unit got a placement.
func countPlacements(ctx context.Context, reg *registry.Registry, rev int64, n int) <-chan time.Time {
	out := make(chan time.Time, 1)
	events := reg.WatchPlacements(ctx, rev)
	go func() {
		seen := make(map[string]bool, n)
		for ev := range events {
			if ev.Err != nil {
				return
			}
			if !ev.Deleted {
				seen[ev.Value.Name] = true
			}
			if len(seen) == n {
				out <- time.Now()
				return
			}
		}
	}()
	return out
}
