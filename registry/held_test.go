package registry_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestPresenceLastRenewed: a presence knows when its last acknowledged
// keepalive was sent, from the start (adopted leases included), and keeps
// it moving while etcd answers.
func TestPresenceLastRenewed(t *testing.T) {
	reg, ctx := newRegistry(t)
	m := machine.Machine{ID: "m1", Hostname: "h1"}
	before := time.Now()
	p, err := reg.Register(ctx, m, 3*time.Second)
	require.NoError(t, err)
	first := p.LastRenewed()
	require.False(t, first.Before(before), "renewed when registering")
	require.Equal(t, 3*time.Second, p.TTL())
	require.Eventually(t, func() bool { return p.LastRenewed().After(first) }, 3*time.Second, 50*time.Millisecond, "renewed again within a TTL")

	p.Close()
	closed := time.Now()
	p2, err := reg.Register(ctx, m, 5*time.Second)
	require.NoError(t, err)
	defer p2.Close()
	require.True(t, p2.Adopted())
	require.False(t, p2.LastRenewed().Before(closed), "an adopted lease is renewed before it is used")
	require.Equal(t, 3*time.Second, p2.TTL(), "the adopted lease's shorter TTL is the one that counts")
}

// TestReleaseHeld: held placements are deleted only while their machine is
// absent, and only by the leader.
func TestReleaseHeld(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	defer func() { _ = lead.Resign(ctx) }()
	put := func(m, name string) registry.PlanOp {
		return registry.PlanOp{Put: true, Placement: registry.Placement{Machine: m, Name: name, Hash: "h", DesiredState: registry.StateLaunched}}
	}
	_, err = reg.ApplyDecisions(ctx, lead, []registry.PlanOp{put("m1", "a.service"), put("m1", "b.service")}, nil)
	require.NoError(t, err)

	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "h1"}, 2*time.Second)
	require.NoError(t, err)
	err = reg.ReleaseHeld(ctx, lead, "m1", []string{"a.service"})
	require.ErrorIs(t, err, registry.ErrMachinePresent)
	ps, _, err := reg.Schedule(ctx, "m1")
	require.NoError(t, err)
	require.Len(t, ps, 2, "a present machine keeps its placements")

	require.NoError(t, p.Revoke(ctx))
	require.NoError(t, reg.ReleaseHeld(ctx, lead, "m1", []string{"a.service"}))
	ps, _, err = reg.Schedule(ctx, "m1")
	require.NoError(t, err)
	require.Len(t, ps, 1)
	require.Equal(t, "b.service", ps[0].Name)

	require.NoError(t, lead.Resign(ctx))
	err = reg.ReleaseHeld(ctx, lead, "m1", []string{"b.service"})
	require.ErrorIs(t, err, registry.ErrNotLeader)
}
