package registry_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestReadCluster: one read of everything a term starts from, at one
// revision, the bodies only when asked; and the bodies' watch brings a
// create's body at its unit's revision.
func TestReadCluster(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	p, err := reg.Register(ctx, machine.Machine{ID: "m1"}, 10*time.Second)
	require.NoError(t, err)
	defer p.Close()
	u := registry.Unit{Name: "a.service", Hash: "aaaa", DesiredState: registry.StateLaunched}
	require.NoError(t, reg.CreateUnit(ctx, u, "[Service]\nExecStart=/bin/true\n", false))
	_, err = reg.ApplyDecisions(ctx, lead,
		[]registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: "m1", Name: "a.service", Hash: "aaaa", DesiredState: registry.StateLaunched}}},
		[]registry.UnplacedOp{{Name: "b.service", Reason: "no machine"}})
	require.NoError(t, err)

	c, err := reg.ReadCluster(ctx, true)
	require.NoError(t, err)
	require.Len(t, c.Units, 1)
	require.Equal(t, "a.service", c.Units[0].Name)
	require.Equal(t, []string{"m1"}, []string{c.Machines[0].ID})
	require.Equal(t, []registry.Placement{{Machine: "m1", Name: "a.service", Hash: "aaaa", DesiredState: registry.StateLaunched}}, c.Placements)
	require.Equal(t, map[string]string{"b.service": "no machine"}, c.Unplaced)
	require.Equal(t, map[string]string{"aaaa": "[Service]\nExecStart=/bin/true\n"}, c.Bodies)

	// Written after c.Rev: neither read nor counted, but on the watches
	// from c.Rev, the body at its unit's revision.
	bodies := reg.WatchBodies(ctx, c.Rev)
	units := reg.WatchUnits(ctx, c.Rev)
	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: "c.service", Hash: "cccc", DesiredState: registry.StateLaunched}, "[Service]\nExecStart=/bin/false\n", false))
	noBodies, err := reg.ReadCluster(ctx, false)
	require.NoError(t, err)
	require.Nil(t, noBodies.Bodies)
	require.Len(t, noBodies.Units, 2)
	b, ue := <-bodies, <-units
	require.NoError(t, b.Err)
	require.Equal(t, "cccc", b.Key)
	require.Equal(t, "[Service]\nExecStart=/bin/false\n", b.Value)
	require.Equal(t, ue.Rev, b.Rev, "a create writes unit and body at one revision")
	require.Greater(t, noBodies.Rev, c.Rev)
}
