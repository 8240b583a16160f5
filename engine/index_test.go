package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// TestEngineRebuildsPlacementIndex: a cluster whose schedule was written by
// an engine without the unit->placement index gets it from the next leader
// before that leader places anything, and the leader's own placements come
// with their index entries. The leader's counts are its model's; a follower
// has none.
func TestEngineRebuildsPlacementIndex(t *testing.T) {
	cli := etcdtest.Start(t).Client(t)
	reg := registry.New(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	register(t, ctx, reg, "m1", nil, 2*time.Second)

	// The previous version's layout: a unit and its schedule entry, no index.
	const text = "[Service]\nExecStart=/bin/sleep 100\n"
	submit(t, ctx, reg, "old.service", text)
	f, err := unit.ParseString(text)
	require.NoError(t, err)
	v, err := json.Marshal(registry.Placement{Hash: f.Hash().String(), DesiredState: registry.StateLaunched})
	require.NoError(t, err)
	_, err = cli.Put(ctx, reg.Prefix()+"schedule/m1/old.service", string(v))
	require.NoError(t, err)
	indexed := func(name, machine string) bool {
		resp, err := cli.Get(ctx, reg.Prefix()+"placed/"+name+"/"+machine)
		require.NoError(t, err)
		return len(resp.Kvs) == 1
	}
	require.False(t, indexed("old.service", "m1"))

	e, _ := startEngine(t, ctx, reg, "m1")
	require.Eventually(t, func() bool {
		resp, err := cli.Get(ctx, reg.Prefix()+"placed-version")
		return err == nil && len(resp.Kvs) == 1 && indexed("old.service", "m1")
	}, 10*time.Second, 10*time.Millisecond, "the leader rebuilds the index")

	submit(t, ctx, reg, "new.service", text)
	waitPlacement(t, ctx, reg, 5*time.Second, func(w map[string][]string) bool { return len(w["new.service"]) == 1 })
	require.True(t, indexed("new.service", "m1"))
	ps, err := reg.PlacementsOf(ctx, "new.service")
	require.NoError(t, err)
	require.Len(t, ps, 1)

	c, ok := e.Counts(ctx)
	require.True(t, ok)
	require.Equal(t, engine.Counts{
		Machines:   1,
		Units:      map[registry.State]int{registry.StateInactive: 0, registry.StateLoaded: 0, registry.StateLaunched: 2},
		Placements: map[registry.State]int{registry.StateLoaded: 0, registry.StateLaunched: 2},
	}, c)
	follower := engine.New(engine.Config{Registry: reg, ID: "m2"})
	_, ok = follower.Counts(ctx)
	require.False(t, ok, "an engine that does not lead has no counts")
}
