package registry_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestPlacementsOf(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	put := func(m, name, hash string) registry.PlanOp {
		return registry.PlanOp{Put: true, Placement: registry.Placement{Machine: m, Name: name, Hash: hash, DesiredState: registry.StateLaunched}}
	}
	_, err = reg.ApplyPlan(ctx, lead, []registry.PlanOp{
		put("m1", "web.service", "new"),
		put("m0", "web.service", "old"), // a replaced unit moving: two entries
		put("m0", "web2.service", "h"),
		put("m2", "db.service", "h"),
	})
	require.NoError(t, err)

	tests := []struct {
		name string
		unit string
		want []registry.Placement
	}{
		{"two machines, in machine order", "web.service", []registry.Placement{
			{Machine: "m0", Name: "web.service", Hash: "old", DesiredState: registry.StateLaunched},
			{Machine: "m1", Name: "web.service", Hash: "new", DesiredState: registry.StateLaunched},
		}},
		{"one machine", "db.service", []registry.Placement{
			{Machine: "m2", Name: "db.service", Hash: "h", DesiredState: registry.StateLaunched},
		}},
		{"not scheduled", "web3.service", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reg.PlacementsOf(ctx, tt.unit)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
