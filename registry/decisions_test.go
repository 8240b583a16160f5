package registry_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestApplyDecisions(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	_, rev, err := reg.Unplaced(ctx)
	require.NoError(t, err)
	events := reg.WatchUnplaced(ctx, rev)

	// 200 placements (each with its index entry) and 100 reasons: several
	// fenced transactions.
	var ops []registry.PlanOp
	for i := range 200 {
		ops = append(ops, registry.PlanOp{Put: true, Placement: registry.Placement{
			Machine: fmt.Sprintf("m%d", i%2), Name: fmt.Sprintf("u%03d.service", i), Hash: "h", DesiredState: registry.StateLaunched}})
	}
	var reasons []registry.UnplacedOp
	for i := range 100 {
		reasons = append(reasons, registry.UnplacedOp{Name: fmt.Sprintf("x%03d.service", i), Reason: "no machine has metadata role=db"})
	}
	n, err := reg.ApplyDecisions(ctx, lead, ops, reasons)
	require.NoError(t, err)
	require.Equal(t, 300, n)
	ps, _, err := reg.Placements(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 200)
	all, _, err := reg.Unplaced(ctx)
	require.NoError(t, err)
	require.Len(t, all, 100)
	why, err := reg.UnplacedReason(ctx, "x042.service")
	require.NoError(t, err)
	require.Equal(t, "no machine has metadata role=db", why)
	ev := <-events
	require.Equal(t, "x000.service", ev.Key)
	require.Equal(t, "no machine has metadata role=db", ev.Value)

	// Placing a unit clears its reason in the same batch.
	n, err = reg.ApplyDecisions(ctx, lead,
		[]registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: "m0", Name: "x042.service", Hash: "h", DesiredState: registry.StateLaunched}}},
		[]registry.UnplacedOp{{Name: "x042.service"}})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	_, err = reg.UnplacedReason(ctx, "x042.service")
	require.ErrorIs(t, err, registry.ErrNotFound)

	// A deposed leader writes nothing.
	require.NoError(t, lead.Resign(ctx))
	n, err = reg.ApplyDecisions(ctx, lead, nil, []registry.UnplacedOp{{Name: "x001.service"}})
	require.ErrorIs(t, err, registry.ErrNotLeader)
	require.Zero(t, n)
	_, err = reg.UnplacedReason(ctx, "x001.service")
	require.NoError(t, err)
}

func TestBodiesOf(t *testing.T) {
	reg, ctx := newRegistry(t)
	var hashes []string
	for i := range 300 {
		h := fmt.Sprintf("%040x", i)
		hashes = append(hashes, h)
		if i%3 == 0 {
			continue // no body for these
		}
		require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: fmt.Sprintf("u%d.service", i), Hash: h, DesiredState: registry.StateInactive}, "body "+h, false))
	}
	got, err := reg.BodiesOf(ctx, hashes)
	require.NoError(t, err)
	require.Len(t, got, 200)
	require.Equal(t, "body "+hashes[1], got[hashes[1]])
	require.NotContains(t, got, hashes[0])
}

func TestEngineVersion(t *testing.T) {
	reg, ctx := newRegistry(t)
	v, rev, err := reg.EngineVersion(ctx)
	require.NoError(t, err)
	require.Empty(t, v)
	require.Zero(t, rev)

	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	require.NoError(t, reg.SetEngineVersion(ctx, lead, "1.2.0", 0))
	v, rev, err = reg.EngineVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, "1.2.0", v)

	tests := []struct {
		name    string
		version string
		rev     int64
		want    error
	}{
		{name: "stale revision", version: "1.3.0", rev: rev - 1, want: registry.ErrConflict},
		{name: "absent expected but present", version: "1.3.0", rev: 0, want: registry.ErrConflict},
		{name: "current revision", version: "1.3.0", rev: rev},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := reg.SetEngineVersion(ctx, lead, tc.version, tc.rev)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
		})
	}
	v, rev, err = reg.EngineVersion(ctx)
	require.NoError(t, err)
	require.Equal(t, "1.3.0", v)

	require.NoError(t, lead.Resign(ctx))
	require.ErrorIs(t, reg.SetEngineVersion(ctx, lead, "9.9.9", rev), registry.ErrNotLeader)
}
