package engine

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestRolloutReadsStatesInFlightOnly: each tick reads the states of the
// copies in flight, where their units are placed, not of every unit of
// the rollout on every machine any of them runs on.
func TestRolloutReadsStatesInFlightOnly(t *testing.T) {
	reg, lead, _, ctx := hygieneFixture(t)
	var ops []registry.PlanOp
	ro := registry.Rollout{ID: "web@*", To: "new", MaxUnavailable: 1, Phase: registry.RolloutRunning}
	for i, name := range []string{"web@1.service", "web@2.service", "web@3.service"} {
		require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: "old", DesiredState: registry.StateLaunched}, "body", true))
		state := registry.StepPending
		if i == 0 {
			state = registry.StepUpdating
		}
		ro.Units = append(ro.Units, registry.RolloutUnit{Name: name, From: "old"})
		ro.Steps = append(ro.Steps, registry.RolloutStep{Unit: name, State: state})
		for _, m := range []string{"m1", "m2", "m3"} {
			if m == "m"+name[4:5] {
				ops = append(ops, registry.PlanOp{Put: true, Placement: registry.Placement{Machine: m, Name: name, Hash: "old", DesiredState: registry.StateLaunched}})
			}
		}
	}
	_, err := reg.ApplyPlan(ctx, lead, ops)
	require.NoError(t, err)
	for _, m := range []string{"m1", "m2", "m3"} {
		p, err := reg.Register(ctx, machine.Machine{ID: m, Hostname: m}, 5*time.Second)
		require.NoError(t, err)
		// Every machine reports every unit, as a stale state would.
		for _, name := range []string{"web@1.service", "web@2.service", "web@3.service"} {
			require.NoError(t, p.PublishState(ctx, registry.UnitState{Name: name, Hash: "old", ActiveState: "active"}))
		}
	}

	c := newRollouter(reg, lead, slog.New(slog.DiscardHandler), time.Now)
	v, err := c.read(ctx, ro)
	require.NoError(t, err)
	require.Len(t, v.units, 3)
	require.Equal(t, []string{"m1"}, v.placements["web@1.service"])
	require.Equal(t, map[[2]string]registry.UnitState{
		{"web@1.service", "m1"}: {Name: "web@1.service", Machine: "m1", Hash: "old", ActiveState: "active"},
	}, v.states)
}
