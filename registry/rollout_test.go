package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestRolloutRecords(t *testing.T) {
	reg, ctx := newRegistry(t)
	for _, n := range []string{"web@1.service", "web@2.service"} {
		require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: n, Hash: "old", DesiredState: registry.StateLaunched}, "old body", false))
	}
	units, _, err := reg.Units(ctx)
	require.NoError(t, err)
	ro := registry.Rollout{ID: "web@*.service", To: "new", Phase: registry.RolloutRunning, MaxUnavailable: 1,
		Units: []registry.RolloutUnit{{Name: "web@1.service", From: "old"}, {Name: "web@2.service", From: "old"}},
		Steps: []registry.RolloutStep{{Unit: "web@1.service", State: registry.StepPending}, {Unit: "web@2.service", State: registry.StepPending}}}

	// A unit changed since it was read: nothing is written.
	require.NoError(t, reg.SetDesiredState(ctx, "web@2.service", registry.StateLoaded))
	require.ErrorIs(t, reg.StartRollout(ctx, ro, units, "new body", 0), registry.ErrConflict)
	_, err = reg.GetRollout(ctx, ro.ID)
	require.ErrorIs(t, err, registry.ErrNotFound)
	_, err = reg.Body(ctx, "new")
	require.ErrorIs(t, err, registry.ErrNotFound)
	u1, err := reg.Unit(ctx, "web@1.service")
	require.NoError(t, err)
	require.Equal(t, "old", u1.Hash)
	require.Nil(t, u1.Rollout)

	units, _, err = reg.Units(ctx)
	require.NoError(t, err)
	rev, err := reg.Revision(ctx)
	require.NoError(t, err)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changes := reg.WatchChanges(wctx, rev)
	require.NoError(t, reg.StartRollout(ctx, ro, units, "new body", 0))
	// One transaction, one batch: the record and both units.
	b := <-changes
	require.NoError(t, b.Err)
	var kinds []string
	for _, c := range b.Changes {
		switch {
		case c.Rollout != nil:
			kinds = append(kinds, "rollout "+c.Rollout.Cur.ID)
		case c.Unit != nil:
			kinds = append(kinds, "unit "+c.Unit.Cur.Name)
		}
	}
	require.ElementsMatch(t, []string{"rollout web@*.service", "unit web@1.service", "unit web@2.service"}, kinds)
	stopWatch()
	u1, err = reg.Unit(ctx, "web@1.service")
	require.NoError(t, err)
	require.Equal(t, "new", u1.Hash)
	require.Equal(t, &registry.UnitRollout{ID: ro.ID, Hash: "old"}, u1.Rollout)
	require.Equal(t, "old", u1.Rollout.HashOn(u1.Hash, "m1"))

	// A second rollout of a unit in it, and a blind replace, are refused.
	units, _, err = reg.Units(ctx)
	require.NoError(t, err)
	second := ro
	second.ID = "web@1.service"
	require.ErrorIs(t, reg.StartRollout(ctx, second, units[:1], "other", 0), registry.ErrRolloutActive)
	require.ErrorIs(t, reg.CreateUnit(ctx, registry.Unit{Name: "web@1.service", Hash: "x", DesiredState: registry.StateLaunched}, "x", true), registry.ErrRolloutActive)
	// The marker survives a desired-state change.
	require.NoError(t, reg.SetDesiredState(ctx, "web@1.service", registry.StateLoaded))
	u1, err = reg.Unit(ctx, "web@1.service")
	require.NoError(t, err)
	require.NotNil(t, u1.Rollout)

	got, err := reg.ControlRollout(ctx, ro.ID, func(r *registry.Rollout) error { r.Paused = true; return nil })
	require.NoError(t, err)
	require.True(t, got.Paused)

	// Engine writes are fenced by the leadership.
	lead, err := reg.Campaign(ctx, "m1", 2*time.Second)
	require.NoError(t, err)
	cur, err := reg.GetRollout(ctx, ro.ID)
	require.NoError(t, err)
	cur.Steps[0].State = registry.StepUpdating
	u1.Rollout.Hash = ""
	_, err = reg.AdvanceRollout(ctx, lead, cur, []registry.Unit{u1})
	require.NoError(t, err)
	_, err = reg.AdvanceRollout(ctx, lead, cur, []registry.Unit{u1})
	require.ErrorIs(t, err, registry.ErrConflict, "a stale record is refused")
	require.NoError(t, lead.Resign(ctx))
	cur, err = reg.GetRollout(ctx, ro.ID)
	require.NoError(t, err)
	_, err = reg.AdvanceRollout(ctx, lead, cur, nil)
	require.ErrorIs(t, err, registry.ErrNotLeader)

	// Bodies a rollout needs for an undo are not collected.
	unref, err := reg.UnreferencedBodies(ctx)
	require.NoError(t, err)
	require.NotContains(t, unref, "old")
	require.NotContains(t, unref, "new")
}
