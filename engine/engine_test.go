package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

func submit(t *testing.T, ctx context.Context, reg *registry.Registry, name, text string) {
	t.Helper()
	f, err := unit.ParseString(text)
	require.NoError(t, err)
	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: f.Hash().String(), DesiredState: registry.StateLaunched}, f.String(), false))
}

// waitPlacement polls the schedule until cond holds on unit -> machines.
func waitPlacement(t *testing.T, ctx context.Context, reg *registry.Registry, d time.Duration, cond func(map[string][]string) bool) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ps, _, err := reg.Placements(ctx)
		require.NoError(t, err)
		w := map[string][]string{}
		for _, p := range ps {
			w[p.Name] = append(w[p.Name], p.Machine)
		}
		if cond(w) {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("placement condition not met after %s; schedule: %v", d, w)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startEngine(t *testing.T, ctx context.Context, reg *registry.Registry, id string) (*engine.Engine, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	e := engine.New(engine.Config{Registry: reg, ID: id, LeaderTTL: time.Second, ReconcileInterval: 5 * time.Second})
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return e, stop
}

func TestEnginePlacesAndFailsOver(t *testing.T) {
	cli := etcdtest.Start(t).Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	presences := map[string]*registry.Presence{}
	for _, id := range []string{"m1", "m2", "m3"} {
		p, err := reg.Register(ctx, machine.Machine{ID: id, Hostname: id, Metadata: map[string]string{"role": map[bool]string{true: "db", false: "web"}[id == "m3"]}}, 2*time.Second)
		require.NoError(t, err)
		presences[id] = p
		t.Cleanup(p.Close)
	}
	startEngine(t, ctx, reg, "m1")

	start := time.Now()
	for i := range 6 {
		submit(t, ctx, reg, fmt.Sprintf("web%d.service", i), "[Service]\nExecStart=/bin/sleep 100\n[X-Fleet]\nMachineMetadata=role=web\n")
	}
	submit(t, ctx, reg, "db.service", "[Service]\nExecStart=/bin/sleep 100\n[X-Fleet]\nMachineMetadata=role=db\n")
	w := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w) == 7 })
	t.Logf("7 units placed %.1f ms after the first submit", float64(time.Since(start).Microseconds())/1000)
	require.Equal(t, []string{"m3"}, w["db.service"])
	count := map[string]int{}
	for name, ms := range w {
		require.Len(t, ms, 1, name)
		count[ms[0]]++
	}
	require.Equal(t, map[string]int{"m1": 3, "m2": 3, "m3": 1}, count)

	// m2 dies (its keepalives stop): its units move to m1, the only other web machine.
	var onM2 []string
	for name, ms := range w {
		if ms[0] == "m2" {
			onM2 = append(onM2, name)
		}
	}
	presences["m2"].Close()
	died := time.Now()
	w = waitPlacement(t, ctx, reg, 10*time.Second, func(w map[string][]string) bool {
		for _, name := range onM2 {
			if len(w[name]) != 1 || w[name][0] != "m1" {
				return false
			}
		}
		return true
	})
	t.Logf("failover: units of the dead machine placed elsewhere %.2f s after its keepalives stopped (TTL 2 s)", time.Since(died).Seconds())
	require.Equal(t, []string{"m3"}, w["db.service"], "units of live machines do not move")

	// Stopping a unit rewrites its placement's desired state; destroying it unschedules it.
	require.NoError(t, reg.SetDesiredState(ctx, "db.service", registry.StateLoaded))
	waitPlacement(t, ctx, reg, 5*time.Second, func(map[string][]string) bool {
		s, _, err := reg.Schedule(ctx, "m3")
		require.NoError(t, err)
		return len(s) == 1 && s[0].DesiredState == registry.StateLoaded
	})
	require.NoError(t, reg.DestroyUnit(ctx, "db.service"))
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["db.service"]) == 0 })
}

func TestEngineLeaderTakeover(t *testing.T) {
	cli := etcdtest.Start(t).Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "m1"}, 5*time.Second)
	require.NoError(t, err)
	defer p.Close()

	e1, stop1 := startEngine(t, ctx, reg, "e1")
	require.Eventually(t, e1.Leading, 5*time.Second, 10*time.Millisecond)
	e2, _ := startEngine(t, ctx, reg, "e2")
	submit(t, ctx, reg, "a.service", "[Service]\nExecStart=/bin/true\n")
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["a.service"]) == 1 })
	require.False(t, e2.Leading(), "only one engine leads")

	stop1()
	lost := time.Now()
	require.Eventually(t, e2.Leading, 5*time.Second, 5*time.Millisecond)
	t.Logf("leader takeover after a graceful stop: %.1f ms", float64(time.Since(lost).Microseconds())/1000)
	submit(t, ctx, reg, "b.service", "[Service]\nExecStart=/bin/true\n")
	w := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["b.service"]) == 1 })
	require.Len(t, w["a.service"], 1, "the new leader keeps the old placements, no duplicates")
}

func TestEngineReportsUnplaceable(t *testing.T) {
	cli := etcdtest.Start(t).Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "m1"}, 5*time.Second)
	require.NoError(t, err)
	defer p.Close()
	e, _ := startEngine(t, ctx, reg, "e1")
	submit(t, ctx, reg, "db.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=role=db\n")
	require.Eventually(t, func() bool { return e.Unplaced()["db.service"] == "no machine has metadata role=db" }, 5*time.Second, 10*time.Millisecond)
}
