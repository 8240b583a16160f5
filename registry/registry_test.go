package registry_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

func newRegistry(t *testing.T) (*registry.Registry, context.Context) {
	t.Helper()
	e := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return registry.New(e.Client(t), registry.WithPrefix("/test/")), ctx
}

func TestUnits(t *testing.T) {
	reg, ctx := newRegistry(t)
	u := registry.Unit{Name: "web.service", Hash: "aaaa", DesiredState: registry.StateInactive}
	require.NoError(t, reg.CreateUnit(ctx, u, "[Service]\nExecStart=/bin/true\n", false))

	err := reg.CreateUnit(ctx, registry.Unit{Name: "web.service", Hash: "bbbb", DesiredState: registry.StateLaunched}, "other", false)
	require.ErrorIs(t, err, registry.ErrExists)
	got, err := reg.Unit(ctx, "web.service")
	require.NoError(t, err)
	require.Equal(t, "aaaa", got.Hash, "a refused create must not change the unit")
	_, err = reg.Body(ctx, "bbbb")
	require.ErrorIs(t, err, registry.ErrNotFound, "a refused create writes nothing")

	require.NoError(t, reg.SetDesiredState(ctx, "web.service", registry.StateLaunched))
	got, err = reg.Unit(ctx, "web.service")
	require.NoError(t, err)
	require.Equal(t, registry.StateLaunched, got.DesiredState)
	require.Equal(t, "aaaa", got.Hash)

	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: "web.service", Hash: "cccc", DesiredState: registry.StateLaunched}, "new", true))
	body, err := reg.Body(ctx, "cccc")
	require.NoError(t, err)
	require.Equal(t, "new", body)

	units, rev, err := reg.Units(ctx)
	require.NoError(t, err)
	require.Len(t, units, 1)
	require.Positive(t, rev)

	require.ErrorIs(t, reg.SetDesiredState(ctx, "nope.service", registry.StateLaunched), registry.ErrNotFound)
	require.NoError(t, reg.DestroyUnit(ctx, "web.service"))
	require.ErrorIs(t, reg.DestroyUnit(ctx, "web.service"), registry.ErrNotFound)
	_, err = reg.Unit(ctx, "web.service")
	require.ErrorIs(t, err, registry.ErrNotFound)

	bodies, err := reg.Bodies(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"aaaa": "[Service]\nExecStart=/bin/true\n", "cccc": "new"}, bodies,
		"bodies outlive their units until the engine collects them")
}

func TestParseState(t *testing.T) {
	for _, s := range []string{"inactive", "loaded", "launched"} {
		got, err := registry.ParseState(s)
		require.NoError(t, err)
		require.Equal(t, registry.State(s), got)
	}
	_, err := registry.ParseState("running")
	require.ErrorContains(t, err, "want inactive, loaded or launched")
}

func TestPresence(t *testing.T) {
	reg, ctx := newRegistry(t)
	m := machine.Machine{ID: "m1", PublicIP: "10.0.0.1", Hostname: "h1"}
	p, err := reg.Register(ctx, m, 2*time.Second)
	require.NoError(t, err)
	require.False(t, p.Adopted())

	t.Run("duplicate machine ID from another host is refused", func(t *testing.T) {
		_, err := reg.Register(ctx, machine.Machine{ID: "m1", PublicIP: "10.0.0.9", Hostname: "h9"}, 2*time.Second)
		require.ErrorIs(t, err, registry.ErrMachineIDInUse)
		require.ErrorContains(t, err, "host h1 (10.0.0.1) holds it")
	})

	require.NoError(t, p.PublishState(ctx, registry.UnitState{Name: "a.service", Hash: "h", LoadState: "loaded", ActiveState: "active", SubState: "running"}))

	t.Run("a restarted fleetd adopts the lease: machine and states stay", func(t *testing.T) {
		p.Close()
		p2, err := reg.Register(ctx, m, 2*time.Second)
		require.NoError(t, err)
		require.True(t, p2.Adopted())
		require.Equal(t, p.Lease(), p2.Lease())
		time.Sleep(3 * time.Second) // longer than the TTL: only the adopted keepalive holds it
		ms, _, err := reg.Machines(ctx)
		require.NoError(t, err)
		require.Len(t, ms, 1)
		st, err := reg.States(ctx, "m1")
		require.NoError(t, err)
		require.Len(t, st, 1)
		require.Equal(t, "running", st[0].SubState)

		require.NoError(t, p2.Revoke(ctx))
		ms, _, err = reg.Machines(ctx)
		require.NoError(t, err)
		require.Empty(t, ms)
		st, err = reg.States(ctx, "")
		require.NoError(t, err)
		require.Empty(t, st, "states die with the machine's lease")
	})

	t.Run("TTL below etcd's minimum is refused", func(t *testing.T) {
		_, err := reg.Register(ctx, m, time.Second)
		require.ErrorContains(t, err, "below etcd's minimum")
	})
}

func TestExpiredMachineArrivesAsDeleteEvent(t *testing.T) {
	reg, ctx := newRegistry(t)
	_, rev, err := reg.Machines(ctx)
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := reg.WatchMachines(wctx, rev)
	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "h1"}, 2*time.Second)
	require.NoError(t, err)
	ev := <-events
	require.False(t, ev.Deleted)
	require.Equal(t, "m1", ev.Value.ID)
	p.Close() // stop keepalives: the machine "dies"
	start := time.Now()
	ev = <-events
	require.True(t, ev.Deleted)
	require.Equal(t, "m1", ev.Key)
	t.Logf("lease expiry seen by watch %.2fs after keepalives stopped (TTL 2s)", time.Since(start).Seconds())
}

func TestApplyPlanIsFencedByLeadership(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	leader, err := reg.Leader(ctx)
	require.NoError(t, err)
	require.Equal(t, "engine-a", leader)

	// 300 ops, each with its index entry: several transactions.
	var ops []registry.PlanOp
	for i := range 300 {
		ops = append(ops, registry.PlanOp{Put: true, Placement: registry.Placement{
			Machine: fmt.Sprintf("m%d", i%3), Name: fmt.Sprintf("u%03d.service", i), Hash: "h", DesiredState: registry.StateLaunched}})
	}
	n, err := reg.ApplyPlan(ctx, lead, ops)
	require.NoError(t, err)
	require.Equal(t, 300, n)
	sched, _, err := reg.Schedule(ctx, "m1")
	require.NoError(t, err)
	require.Len(t, sched, 100)
	require.Equal(t, "m1", sched[0].Machine)
	require.Equal(t, registry.StateLaunched, sched[0].DesiredState)

	// A second candidate waits; the first resigns; the second leads and
	// the first one's writes now fail.
	won := make(chan *registry.Leadership, 1)
	go func() {
		l, err := reg.Campaign(ctx, "engine-b", time.Second)
		if err == nil {
			won <- l
		}
	}()
	require.NoError(t, lead.Resign(ctx))
	var lead2 *registry.Leadership
	select {
	case lead2 = <-won:
	case <-time.After(10 * time.Second):
		t.Fatal("second engine did not take over")
	}
	_, err = reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Placement: registry.Placement{Machine: "m0", Name: "u000.service"}}})
	require.True(t, errors.Is(err, registry.ErrNotLeader), "deposed leader's write must fail, got %v", err)
	_, err = reg.ApplyPlan(ctx, lead2, []registry.PlanOp{{Placement: registry.Placement{Machine: "m0", Name: "u000.service"}}})
	require.NoError(t, err)
	require.NoError(t, lead2.Resign(ctx))
}

func TestWatchScheduleSeesOnlyItsMachine(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "e", time.Second)
	require.NoError(t, err)
	defer lead.Resign(ctx) //nolint:errcheck
	_, rev, err := reg.Schedule(ctx, "m1")
	require.NoError(t, err)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := reg.WatchSchedule(wctx, "m1", rev)
	put := func(m, u string) {
		_, err := reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: m, Name: u, Hash: "h", DesiredState: registry.StateLoaded}}})
		require.NoError(t, err)
	}
	put("m2", "other.service")
	put("m10", "other.service") // a machine whose ID has m1 as a prefix
	put("m1", "mine.service")
	ev := <-events
	require.Equal(t, "mine.service", ev.Key)
	require.Equal(t, "m1", ev.Value.Machine)
	require.Equal(t, registry.StateLoaded, ev.Value.DesiredState)
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}
