package registry_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func placeOn(m, name, hash string) registry.PlanOp {
	return registry.PlanOp{Put: true, Placement: registry.Placement{Machine: m, Name: name, Hash: hash, DesiredState: registry.StateLaunched}}
}

// TestCollectBodies: a body is unreferenced when no unit and no placement
// names its hash; collecting deletes it only if nobody wrote it since it
// was listed, and only for the leader.
func TestCollectBodies(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	create := func(name, hash string) {
		t.Helper()
		require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: hash, DesiredState: registry.StateLaunched}, "body "+hash, true))
	}
	create("a.service", "h1")
	create("b.service", "h2")
	create("b.service", "h3") // replaced: h2 only in the schedule now
	create("c.service", "h4")
	create("d.service", "h5")
	_, err = reg.ApplyPlan(ctx, lead, []registry.PlanOp{placeOn("m1", "b.service", "h2")})
	require.NoError(t, err)
	require.NoError(t, reg.DestroyUnit(ctx, "a.service"))
	require.NoError(t, reg.DestroyUnit(ctx, "c.service"))
	require.NoError(t, reg.DestroyUnit(ctx, "d.service"))

	unref, err := reg.UnreferencedBodies(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"h1", "h4", "h5"}, keys(unref), "h2 is in the schedule, h3 is b's")

	// h1 is submitted again after the listing: its body is rewritten, so
	// collecting the stale listing must leave it (the batch falls back to
	// one body at a time and still collects h4 and h5).
	create("e.service", "h1")
	n, err := reg.CollectBodies(ctx, lead, unref)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	bodies, err := reg.Bodies(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"h1", "h2", "h3"}, keys(bodies))

	require.NoError(t, reg.DestroyUnit(ctx, "e.service"))
	unref, err = reg.UnreferencedBodies(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"h1"}, keys(unref))
	require.NoError(t, lead.Resign(ctx))
	_, err = reg.CollectBodies(ctx, lead, unref)
	require.ErrorIs(t, err, registry.ErrNotLeader)
	_, err = reg.Body(ctx, "h1")
	require.NoError(t, err, "a deposed leader collects nothing")
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDropSchedule: an absent machine's schedule is dropped with its
// absence record; a present machine's never; a machine registering again
// forgets its absence.
func TestDropSchedule(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	p2, err := reg.Register(ctx, machine.Machine{ID: "m2", Hostname: "m2"}, 5*time.Second)
	require.NoError(t, err)
	defer p2.Close()
	_, err = reg.ApplyPlan(ctx, lead, []registry.PlanOp{
		placeOn("m1", "g.service", "h"), placeOn("m1", "pinned.service", "h"), placeOn("m2", "g.service", "h"),
	})
	require.NoError(t, err)

	since := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	require.NoError(t, reg.MarkAbsent(ctx, lead, "m1", since))
	require.NoError(t, reg.MarkAbsent(ctx, lead, "m1", since.Add(time.Hour)), "a second mark keeps the first time")
	require.NoError(t, reg.MarkAbsent(ctx, lead, "m2", since), "a present machine is not marked")
	absent, err := reg.AbsentMachines(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]time.Time{"m1": since}, absent)

	_, err = reg.DropSchedule(ctx, lead, "m2")
	require.ErrorIs(t, err, registry.ErrConflict)
	n, err := reg.DropSchedule(ctx, lead, "m1")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	ps, _, err := reg.Placements(ctx)
	require.NoError(t, err)
	require.Equal(t, []registry.Placement{{Machine: "m2", Name: "g.service", Hash: "h", DesiredState: registry.StateLaunched}}, ps)
	absent, err = reg.AbsentMachines(ctx)
	require.NoError(t, err)
	require.Empty(t, absent)

	require.NoError(t, reg.MarkAbsent(ctx, lead, "m3", since))
	p3, err := reg.Register(ctx, machine.Machine{ID: "m3", Hostname: "m3"}, 5*time.Second)
	require.NoError(t, err)
	defer p3.Close()
	absent, err = reg.AbsentMachines(ctx)
	require.NoError(t, err)
	require.Empty(t, absent, "registering again forgets the absence")
	require.NoError(t, reg.MarkAbsent(ctx, lead, "m4", since))
	require.NoError(t, reg.ForgetAbsent(ctx, lead, "m4"))
	absent, err = reg.AbsentMachines(ctx)
	require.NoError(t, err)
	require.Empty(t, absent)
}

// TestCompactAndResume: after a compaction a watch from an older revision
// ends with etcd's compacted error, and one from a fresh read goes on.
func TestCompactAndResume(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	_, old, err := reg.Schedule(ctx, "m1")
	require.NoError(t, err)
	for i := range 5 {
		_, err := reg.ApplyPlan(ctx, lead, []registry.PlanOp{placeOn("m1", "a.service", string(rune('a'+i)))})
		require.NoError(t, err)
	}
	now, err := reg.Revision(ctx)
	require.NoError(t, err)
	require.NoError(t, reg.Compact(ctx, now))
	require.NoError(t, reg.Compact(ctx, now-1), "an older revision is compacted already: no error")

	ev := <-reg.WatchSchedule(ctx, "m1", old)
	require.ErrorIs(t, ev.Err, rpctypes.ErrCompacted)

	// What the agent does on a watch error: read again, watch from there.
	ps, rev, err := reg.Schedule(ctx, "m1")
	require.NoError(t, err)
	require.Len(t, ps, 1)
	require.Equal(t, "e", ps[0].Hash)
	ch := reg.WatchSchedule(ctx, "m1", rev)
	_, err = reg.ApplyPlan(ctx, lead, []registry.PlanOp{placeOn("m1", "a.service", "f")})
	require.NoError(t, err)
	ev = <-ch
	require.NoError(t, ev.Err)
	require.Equal(t, "f", ev.Value.Hash)
}

// TestClearEngineVersion: the record is cleared only while no engine leads
// or campaigns, unless forced.
func TestClearEngineVersion(t *testing.T) {
	reg, ctx := newRegistry(t)
	v, err := reg.ClearEngineVersion(ctx, false)
	require.NoError(t, err)
	require.Empty(t, v, "nothing recorded, nothing cleared")

	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	require.NoError(t, reg.SetEngineVersion(ctx, lead, "2.0.0", 0))
	_, err = reg.ClearEngineVersion(ctx, false)
	require.ErrorIs(t, err, registry.ErrEngineRunning)
	require.ErrorContains(t, err, "engine-a")
	stored, _, err := reg.EngineVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, "2.0.0", stored)

	v, err = reg.ClearEngineVersion(ctx, true)
	require.NoError(t, err)
	require.Equal(t, "2.0.0", v)

	require.NoError(t, reg.SetEngineVersion(ctx, lead, "3146401", 0))
	require.NoError(t, lead.Resign(ctx))
	v, err = reg.ClearEngineVersion(ctx, false)
	require.NoError(t, err)
	require.Equal(t, "3146401", v)
	stored, _, err = reg.EngineVersion(ctx)
	require.NoError(t, err)
	require.Empty(t, stored)
}
