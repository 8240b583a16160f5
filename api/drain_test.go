package api_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestDrainAndMove drives drain, undrain and move through both clients:
// the plan, the refusals (unknown machine, draining already, last machine
// for a unit, infeasible move) that write nothing, and the machine state.
func TestDrainAndMove(t *testing.T) {
	for _, name := range []string{"registry", "http-tcp"} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			cl := clients(t, c)[name]
			dr := cl.(api.Drainer)
			ctx := c.ctx
			c.addMachine(machine.Machine{ID: "m1", Metadata: map[string]string{"disk": "ssd"}})
			c.addMachine(machine.Machine{ID: "m2"})
			for _, u := range []*api.Unit{
				{Name: "a.service", Options: helloOpts, DesiredState: "launched"},
				{Name: "ssd.service", Options: append(helloOpts[:2:2], &api.UnitOption{Section: "X-Fleet", Name: "MachineMetadata", Value: "disk=ssd"}), DesiredState: "launched"},
				{Name: "pin.service", Options: append(helloOpts[:2:2], &api.UnitOption{Section: "X-Fleet", Name: "MachineID", Value: "m1"}), DesiredState: "launched"},
			} {
				_, err := cl.CreateUnit(ctx, u)
				require.NoError(t, err)
				c.place("m1", u.Name, registry.StateLaunched)
			}

			_, err := dr.DrainMachine(ctx, "m9", api.DrainRequest{})
			require.ErrorIs(t, err, api.ErrNotFound)
			_, err = dr.DrainMachine(ctx, "m1", api.DrainRequest{Deadline: "soon"})
			require.ErrorIs(t, err, api.ErrInvalid)

			// m1 is the last machine with disk=ssd: refused, with the plan.
			_, err = dr.DrainMachine(ctx, "m1", api.DrainRequest{})
			require.ErrorIs(t, err, api.ErrConflict)
			require.ErrorContains(t, err, "ssd.service (no other machine has metadata disk=ssd)")
			require.ErrorContains(t, err, "Nothing was changed")
			_, ok, err := c.reg.DrainOf(ctx, "m1")
			require.NoError(t, err)
			require.False(t, ok, "a refused drain writes nothing")

			plan, err := dr.DrainMachine(ctx, "m1", api.DrainRequest{Force: true, Deadline: "10m"})
			require.NoError(t, err)
			require.Equal(t, []string{"a.service"}, plan.Move)
			require.Equal(t, map[string]string{"pin.service": "MachineID=m1 pins it to this machine"}, plan.Stay)
			require.Contains(t, plan.Unplaced, "ssd.service")
			d, ok, err := c.reg.DrainOf(ctx, "m1")
			require.NoError(t, err)
			require.True(t, ok)
			require.False(t, d.Deadline.IsZero())

			_, err = dr.DrainMachine(ctx, "m1", api.DrainRequest{Force: true})
			require.ErrorIs(t, err, api.ErrConflict)
			require.ErrorContains(t, err, "draining already")

			ms, err := cl.Machines(ctx)
			require.NoError(t, err)
			require.Equal(t, "draining", ms[0].State)
			require.Equal(t, "active", ms[1].State)

			// A move to a draining machine, to where it runs, of an unknown
			// unit: refused, nothing recorded.
			require.ErrorIs(t, dr.MoveUnit(ctx, "a.service", "m1"), api.ErrConflict)
			require.ErrorIs(t, dr.MoveUnit(ctx, "nope.service", "m2"), api.ErrNotFound)
			require.ErrorIs(t, dr.MoveUnit(ctx, "a.service", "m9"), api.ErrNotFound)
			err = dr.MoveUnit(ctx, "ssd.service", "m2")
			require.ErrorIs(t, err, api.ErrConflict)
			require.ErrorContains(t, err, "no metadata disk=ssd")
			moves, _, err := c.reg.Moves(ctx)
			require.NoError(t, err)
			require.Empty(t, moves)

			require.NoError(t, dr.UndrainMachine(ctx, "m1"))
			require.ErrorIs(t, dr.UndrainMachine(ctx, "m1"), api.ErrConflict)
			require.NoError(t, dr.MoveUnit(ctx, "a.service", "m2"))
			require.ErrorIs(t, dr.MoveUnit(ctx, "a.service", "m2"), api.ErrConflict, "a move is pending already")
			moves, _, err = c.reg.Moves(ctx)
			require.NoError(t, err)
			require.Equal(t, "m2", moves["a.service"].To)
		})
	}
}

// TestConcurrentDrainsKeepLastMachine: two machines that can each run a unit
// are drained at the same moment, again and again; at most one of the two
// drains may pass, since together they would leave the unit nowhere.
func TestConcurrentDrainsKeepLastMachine(t *testing.T) {
	c := newCluster(t)
	cl := clients(t, c)["registry"]
	dr := cl.(api.Drainer)
	ctx := c.ctx
	c.addMachine(machine.Machine{ID: "m1"})
	c.addMachine(machine.Machine{ID: "m2"})
	_, err := cl.CreateUnit(ctx, &api.Unit{Name: "a.service", Options: helloOpts, DesiredState: "launched"})
	require.NoError(t, err)
	c.place("m1", "a.service", registry.StateLaunched)

	// One after the other, before any engine moved a.service off m1: the
	// second drain is refused, since a.service would have nowhere to go.
	_, err = dr.DrainMachine(ctx, "m1", api.DrainRequest{})
	require.NoError(t, err)
	_, err = dr.DrainMachine(ctx, "m2", api.DrainRequest{})
	require.ErrorIs(t, err, api.ErrConflict)
	require.ErrorContains(t, err, "a.service (leaving draining machine m1:")
	require.NoError(t, dr.UndrainMachine(ctx, "m1"))

	for round := 0; round < 20; round++ {
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i, id := range []string{"m1", "m2"} {
			wg.Go(func() { _, errs[i] = dr.DrainMachine(ctx, id, api.DrainRequest{}) })
		}
		wg.Wait()
		passed := 0
		for _, err := range errs {
			if err == nil {
				passed++
			} else {
				require.ErrorIs(t, err, api.ErrConflict)
			}
		}
		require.Equal(t, 1, passed, "round %d: %v", round, errs)
		drains, _, err := c.reg.Drains(ctx)
		require.NoError(t, err)
		require.Len(t, drains, 1)
		for id := range drains {
			require.NoError(t, dr.UndrainMachine(ctx, id))
		}
	}
}
