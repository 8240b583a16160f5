package registry_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestPublishStates publishes more states in one call than etcd takes in
// one transaction (128 operations by default).
func TestPublishStates(t *testing.T) {
	reg, ctx := newRegistry(t)
	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "h1"}, 5*time.Second)
	require.NoError(t, err)
	defer p.Close()
	var states []registry.UnitState
	for i := range 300 {
		states = append(states, registry.UnitState{Name: fmt.Sprintf("u%03d.service", i), Hash: "h", LoadState: "loaded", ActiveState: "active", SubState: "running"})
	}
	require.NoError(t, p.PublishStates(ctx, states))
	require.NoError(t, p.PublishStates(ctx, nil))
	got, err := p.PublishedStates(ctx)
	require.NoError(t, err)
	require.Len(t, got, 300)
	for i, s := range got {
		want := states[i]
		want.Machine = "m1"
		require.Equal(t, want, s)
	}

	require.NoError(t, p.Revoke(ctx))
	got, err = reg.States(ctx, "")
	require.NoError(t, err)
	require.Empty(t, got, "states are bound to the machine's lease")
}
