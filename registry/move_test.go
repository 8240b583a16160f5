package registry_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestMoveRecord: a move is recorded once, listed and watched, and ended
// only by the leader on the record it read.
func TestMoveRecord(t *testing.T) {
	reg, ctx := newRegistry(t)
	events := reg.WatchMoves(ctx, 0)
	m := registry.MoveRecord{Unit: "a.service", To: "m2", Since: time.Now().UTC(), Identity: "alice"}
	require.NoError(t, reg.Move(ctx, m))
	require.ErrorIs(t, reg.Move(ctx, m), registry.ErrMoving)
	require.Error(t, reg.Move(ctx, registry.MoveRecord{Unit: "a/b", To: "m2"}))
	require.Error(t, reg.Move(ctx, registry.MoveRecord{Unit: "b.service"}))

	moves, _, err := reg.Moves(ctx)
	require.NoError(t, err)
	require.Len(t, moves, 1)
	got := moves["a.service"]
	require.Equal(t, "m2", got.To)
	require.Equal(t, "alice", got.Identity)
	ev := <-events
	require.Equal(t, "a.service", ev.Key)
	require.Equal(t, "m2", ev.Value.To)

	lead, err := reg.Campaign(ctx, "e1", 5*time.Second)
	require.NoError(t, err)
	defer func() { _ = lead.Resign(ctx) }()
	stale := got
	stale.Rev--
	require.ErrorIs(t, reg.EndMove(ctx, lead, stale), registry.ErrNotLeader, "a record other than the one read stays")
	require.NoError(t, reg.EndMove(ctx, lead, got))
	moves, _, err = reg.Moves(ctx)
	require.NoError(t, err)
	require.Empty(t, moves)
}

func TestAllStatesAndStateOf(t *testing.T) {
	reg, ctx := newRegistry(t)
	p, err := reg.Register(ctx, machine.Machine{ID: "m1"}, registry.MinTTL)
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, p.PublishState(ctx, registry.UnitState{Name: "a.service", ActiveState: "active"}))
	states, rev, err := reg.AllStates(ctx)
	require.NoError(t, err)
	require.Equal(t, []registry.UnitState{{Name: "a.service", Machine: "m1", ActiveState: "active"}}, states)
	require.NotZero(t, rev)

	d := &registry.DrainRecord{Machine: "m1"}
	require.Equal(t, "active", registry.StateOf(nil, false))
	require.Equal(t, "draining", registry.StateOf(d, false))
	d.Done = time.Now()
	require.Equal(t, "drained", registry.StateOf(d, false))
	require.Equal(t, "rebooting", registry.StateOf(d, true))
}
