package registry_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestMachine(t *testing.T) {
	reg, ctx := newRegistry(t)
	m := machine.Machine{ID: "m1", PublicIP: "10.0.0.1", Hostname: "h1", Metadata: map[string]string{"role": "web"}}
	p, err := reg.Register(ctx, m, registry.MinTTL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Revoke(context.Background()) })

	got, err := reg.Machine(ctx, "m1")
	require.NoError(t, err)
	require.Equal(t, m.ID, got.ID)
	require.Equal(t, m.PublicIP, got.PublicIP)
	require.Equal(t, m.Metadata, got.Metadata)

	_, err = reg.Machine(ctx, "m2")
	require.ErrorIs(t, err, registry.ErrNotFound)
}
