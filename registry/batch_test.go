package registry_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestCreateUnits creates more units than one transaction holds, some of
// which exist already, with bodies shared and not.
func TestCreateUnits(t *testing.T) {
	reg, ctx := newRegistry(t)
	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: "u007.service", Hash: "old", DesiredState: registry.StateLaunched}, "old body", false))
	var us []registry.NewUnit
	for i := range 500 {
		h := fmt.Sprintf("h%d", i%7)
		us = append(us, registry.NewUnit{Unit: registry.Unit{Name: fmt.Sprintf("u%03d.service", i), Hash: h, DesiredState: registry.StateLaunched}, Body: "body " + h})
	}
	errs := reg.CreateUnits(ctx, us)
	for i, err := range errs {
		if i == 7 {
			require.ErrorIs(t, err, registry.ErrExists)
			continue
		}
		require.NoError(t, err, us[i].Unit.Name)
	}
	units, _, err := reg.Units(ctx)
	require.NoError(t, err)
	require.Len(t, units, 500)
	for _, u := range units {
		if u.Name == "u007.service" {
			require.Equal(t, "old", u.Hash, "an existing unit is left alone")
			continue
		}
		b, err := reg.Body(ctx, u.Hash)
		require.NoError(t, err)
		require.Equal(t, "body "+u.Hash, b)
	}
}
