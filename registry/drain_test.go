package registry_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestDrainRecord: a drain is set once, read back, marked done only by the
// leader on the record it read, and undone once.
func TestDrainRecord(t *testing.T) {
	reg, ctx := newRegistry(t)
	events := reg.WatchDrains(ctx, 0)
	since := time.Now().UTC().Truncate(time.Second)
	d := registry.DrainRecord{Machine: "m1", Since: since, Deadline: since.Add(time.Minute), Identity: "alice"}
	require.NoError(t, reg.Drain(ctx, d))
	require.ErrorIs(t, reg.Drain(ctx, d), registry.ErrDraining)
	require.Error(t, reg.Drain(ctx, registry.DrainRecord{Machine: "a/b"}))

	got, ok, err := reg.DrainOf(ctx, "m1")
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, got.Draining())
	require.Equal(t, registry.DrainByUser, got.By)
	require.True(t, got.Deadline.Equal(since.Add(time.Minute)))
	ev := <-events
	require.Equal(t, "m1", ev.Key)
	require.Equal(t, "alice", ev.Value.Identity)

	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	defer func() { _ = lead.Resign(ctx) }()
	stale := got
	stale.Rev--
	require.Error(t, reg.SetDrainDone(ctx, lead, stale, time.Now()), "a record changed since it was read is not marked")
	require.NoError(t, reg.SetDrainDone(ctx, lead, got, time.Now()))
	all, _, err := reg.Drains(ctx)
	require.NoError(t, err)
	require.False(t, all["m1"].Draining())

	require.NoError(t, reg.Undrain(ctx, "m1"))
	require.ErrorIs(t, reg.Undrain(ctx, "m1"), registry.ErrNotDraining)
	_, ok, err = reg.DrainOf(ctx, "m1")
	require.NoError(t, err)
	require.False(t, ok)
}

// TestEndDrain: EndDrain ends only the drain record it read; one made after
// an undrain and a new drain (an operator's) stays.
func TestEndDrain(t *testing.T) {
	reg, ctx := newRegistry(t)
	require.NoError(t, reg.Drain(ctx, registry.DrainRecord{Machine: "m1", Since: time.Now(), By: registry.DrainByReboot}))
	ours, ok, err := reg.DrainOf(ctx, "m1")
	require.NoError(t, err)
	require.True(t, ok)

	require.NoError(t, reg.Undrain(ctx, "m1"))
	require.NoError(t, reg.Drain(ctx, registry.DrainRecord{Machine: "m1", Since: time.Now(), Identity: "alice"}))
	require.ErrorIs(t, reg.EndDrain(ctx, ours), registry.ErrNotDraining)
	theirs, ok, err := reg.DrainOf(ctx, "m1")
	require.NoError(t, err)
	require.True(t, ok, "the operator's drain stays")
	require.Equal(t, registry.DrainByUser, theirs.By)

	require.NoError(t, reg.EndDrain(ctx, theirs))
	_, ok, err = reg.DrainOf(ctx, "m1")
	require.NoError(t, err)
	require.False(t, ok)
	require.ErrorIs(t, reg.EndDrain(ctx, theirs), registry.ErrNotDraining)
}

// TestDrainIfUnchanged: a drain planned against the drains read at some
// revision is refused once another drain was recorded after it, so two
// drains checked at the same time cannot both pass a last-machine check.
func TestDrainIfUnchanged(t *testing.T) {
	reg, ctx := newRegistry(t)
	_, rev, err := reg.Drains(ctx)
	require.NoError(t, err)
	require.NoError(t, reg.DrainIfUnchanged(ctx, registry.DrainRecord{Machine: "m1", Since: time.Now()}, rev))

	// m2's plan was made at rev, before m1's drain: refused, nothing written.
	err = reg.DrainIfUnchanged(ctx, registry.DrainRecord{Machine: "m2", Since: time.Now()}, rev)
	require.ErrorIs(t, err, registry.ErrDrainsChanged)
	_, ok, err := reg.DrainOf(ctx, "m2")
	require.NoError(t, err)
	require.False(t, ok)

	// Planned again with m1's drain in view: recorded.
	_, rev, err = reg.Drains(ctx)
	require.NoError(t, err)
	require.NoError(t, reg.DrainIfUnchanged(ctx, registry.DrainRecord{Machine: "m2", Since: time.Now()}, rev))
	require.ErrorIs(t, reg.DrainIfUnchanged(ctx, registry.DrainRecord{Machine: "m2", Since: time.Now()}, rev), registry.ErrDraining)
}
