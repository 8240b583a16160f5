package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestEngineDrain drains through etcd as fleetctl and the reboot
// coordinator do: the leader moves a unit make-before-break, waiting for
// the state the target's agent publishes, marks the drain done (also for an
// empty machine), and a new leader resumes a drain the old one left half-way.
func TestEngineDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reg := registry.New(etcdtest.Start(t).Client(t))
	presences := map[string]*registry.Presence{}
	for _, id := range []string{"m1", "m2", "m3"} {
		presences[id] = register(t, ctx, reg, id, nil, 5*time.Second)
	}
	cfg := engine.Config{Registry: reg, ID: "e1", LeaderTTL: time.Second, ReconcileInterval: 5 * time.Second}
	_, stop1 := startEngineWith(t, ctx, cfg)
	text := "[Service]\nExecStart=/bin/true\n"
	submit(t, ctx, reg, "a.service", text)
	w := waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["a.service"]) == 1 })
	from := w["a.service"][0]
	hash := func() string {
		u, err := reg.Unit(ctx, "a.service")
		require.NoError(t, err)
		return u.Hash
	}()
	active := func(m string) {
		require.NoError(t, presences[m].PublishState(ctx, registry.UnitState{Name: "a.service", Hash: hash, LoadState: "loaded", ActiveState: "active", SubState: "running"}))
	}
	active(from)
	waitDone := func(id string) registry.DrainRecord {
		t.Helper()
		for {
			d, ok, err := reg.DrainOf(ctx, id)
			require.NoError(t, err)
			require.True(t, ok)
			if !d.Draining() {
				return d
			}
			require.NoError(t, ctx.Err(), "drain of %s not done", id)
			time.Sleep(10 * time.Millisecond)
		}
	}

	// An empty machine is drained at once.
	var empty string
	for _, id := range []string{"m1", "m2", "m3"} {
		if id != from {
			empty = id
			break
		}
	}
	require.NoError(t, reg.Drain(ctx, registry.DrainRecord{Machine: empty, Since: time.Now()}))
	waitDone(empty)

	// Make before break: a second copy first, the old one only once the new
	// one is active.
	require.NoError(t, reg.Drain(ctx, registry.DrainRecord{Machine: from, Since: time.Now(), By: registry.DrainByReboot}))
	w = waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["a.service"]) == 2 })
	var to string
	for _, m := range w["a.service"] {
		if m != from {
			to = m
		}
	}
	require.NotEqual(t, empty, to, "nothing is placed on a drained machine")
	time.Sleep(200 * time.Millisecond)
	require.Len(t, schedule(t, ctx, reg)["a.service"], 2, "the old copy stays until the new one is active")

	// The leader fails over half-way; the new one resumes from etcd.
	stop1()
	cfg.ID = "e2"
	startEngineWith(t, ctx, cfg)
	active(to)
	waitPlacement(t, ctx, reg, 10*time.Second, func(w map[string][]string) bool {
		return len(w["a.service"]) == 1 && w["a.service"][0] == to
	})
	d := waitDone(from)
	require.Equal(t, registry.DrainByReboot, d.By)

	// Undrained, the machine takes units again.
	require.NoError(t, reg.Undrain(ctx, empty))
	require.ErrorIs(t, reg.Undrain(ctx, empty), registry.ErrNotDraining)
	submit(t, ctx, reg, "b.service", text)
	w = waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["b.service"]) == 1 })
	require.Equal(t, []string{empty}, w["b.service"], "the least-loaded machine that is not draining")

	// A new copy that never reports active keeps the old one until the
	// deadline; then the old one goes and the drain is done.
	require.NoError(t, reg.Undrain(ctx, from))
	require.NoError(t, reg.Drain(ctx, registry.DrainRecord{Machine: empty, Since: time.Now(), Deadline: time.Now().Add(time.Second)}))
	w = waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["b.service"]) == 2 })
	require.Contains(t, w["b.service"], empty)
	d = waitDone(empty)
	require.False(t, d.Done.Before(d.Deadline), "done at the deadline, not before")
	w = schedule(t, ctx, reg)
	require.Len(t, w["b.service"], 1)
	require.NotContains(t, w["b.service"], empty)
}
