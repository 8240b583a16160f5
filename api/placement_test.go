package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/machine"
)

// TestExplainPlacement asks every client why a unit fits nowhere: each
// machine with the checker that rejects it. A malformed operator is refused
// at submit with its column.
func TestExplainPlacement(t *testing.T) {
	for _, name := range []string{"registry", "http-tcp"} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			cl := clients(t, c)[name]
			ctx := c.ctx
			c.addMachine(machine.Machine{ID: "m1", Metadata: map[string]string{"zone": "a"}, Capacity: &machine.Capacity{CPU: 2000, Memory: 1 << 30}})
			c.addMachine(machine.Machine{ID: "m2", Metadata: map[string]string{"zone": "b"}, Capacity: &machine.Capacity{CPU: 2000, Memory: 4 << 30}})
			_, err := cl.CreateUnit(ctx, &api.Unit{Name: "big.service", DesiredState: "launched", Options: append(helloOpts[:2:2],
				&api.UnitOption{Section: "Service", Name: "MemoryMax", Value: "2G"},
				&api.UnitOption{Section: "X-Fleet", Name: "MachineMetadata", Value: "zone!=b"})})
			require.NoError(t, err)

			x, ok := cl.(api.Explainer)
			require.True(t, ok, "%T explains", cl)
			e, err := x.ExplainPlacement(ctx, "big.service")
			require.NoError(t, err)
			require.Equal(t, "no machine has 2 GiB memory free; largest free: 1 GiB on m1", e.Unplaced)
			require.Equal(t, []engine.Verdict{
				{Machine: "m1", Verdict: "rejected", Checker: "Resources", Detail: "needs 2 GiB memory, 1 GiB free"},
				{Machine: "m2", Verdict: "rejected", Checker: "MachineMetadata", Detail: "no metadata zone!=b"},
			}, e.Machines)

			_, err = x.ExplainPlacement(ctx, "nope.service")
			require.ErrorIs(t, err, api.ErrNotFound)

			_, err = cl.CreateUnit(ctx, &api.Unit{Name: "bad.service", DesiredState: "launched", Options: append(helloOpts[:2:2],
				&api.UnitOption{Section: "X-Fleet", Name: "MachineMetadata", Value: "zone in (a,b"})})
			require.ErrorIs(t, err, api.ErrInvalid)
			require.ErrorContains(t, err, `column 9: list "(a,b" has no closing ')'`)
		})
	}
}

// TestExplainPlacementDraining: explain answers as the engine decides, so a
// draining machine is rejected by the Draining checker, not where the unit
// would go.
func TestExplainPlacementDraining(t *testing.T) {
	c := newCluster(t)
	cl := clients(t, c)["registry"]
	ctx := c.ctx
	c.addMachine(machine.Machine{ID: "m1"})
	c.addMachine(machine.Machine{ID: "m2"})
	_, err := cl.CreateUnit(ctx, &api.Unit{Name: "web.service", DesiredState: "launched", Options: helloOpts})
	require.NoError(t, err)
	_, err = cl.(api.Drainer).DrainMachine(ctx, "m1", api.DrainRequest{})
	require.NoError(t, err)

	e, err := cl.(api.Explainer).ExplainPlacement(ctx, "web.service")
	require.NoError(t, err)
	require.Len(t, e.Machines, 2)
	require.Equal(t, engine.Verdict{Machine: "m1", Verdict: "rejected", Checker: "Draining", Detail: e.Machines[0].Detail}, e.Machines[0])
	require.Equal(t, "placed", e.Machines[1].Verdict, "where the leader would place it now")
}
