package api_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
)

// TestCreateUnitsBatch: a batch of more units than one transaction holds is
// created whole, each unit checked as CreateUnit checks it; a unit that
// exists, one given twice and one refused get their own error and the rest
// are created all the same.
func TestCreateUnitsBatch(t *testing.T) {
	c := newCluster(t)
	bc := c.rc.(api.UnitBatchCreator)
	_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: "u007.service", Options: helloOpts})
	require.NoError(t, err)
	var us []*api.Unit
	for i := range 150 {
		us = append(us, &api.Unit{Name: fmt.Sprintf("u%03d.service", i), DesiredState: "launched",
			Options: opts("Service", "ExecStart", fmt.Sprintf("/bin/sleep %d", i%10))})
	}
	us = append(us,
		&api.Unit{Name: "u100.service", Options: helloOpts},
		&api.Unit{Name: "bad.service", Options: opts("X-Fleet", "MachineOf", "a.service", "X-Fleet", "Global", "true")},
	)
	rs := bc.CreateUnits(c.ctx, us)
	require.Len(t, rs, len(us))
	for i, r := range rs {
		switch us[i].Name {
		case "u007.service":
			require.True(t, errors.Is(r.Err, api.ErrExists), "%v", r.Err)
		case "bad.service":
			require.True(t, errors.Is(r.Err, api.ErrInvalid), "%v", r.Err)
		default:
			if i == 150 {
				require.True(t, errors.Is(r.Err, api.ErrExists), "given twice: %v", r.Err)
				continue
			}
			require.NoError(t, r.Err, us[i].Name)
		}
	}
	all, err := c.rc.Units(c.ctx)
	require.NoError(t, err)
	require.Len(t, all, 150)
	u, err := c.rc.Unit(c.ctx, "u149.service")
	require.NoError(t, err)
	require.Equal(t, "launched", u.DesiredState)
	require.Equal(t, "/bin/sleep 9", u.Options[0].Value)
	u, err = c.rc.Unit(c.ctx, "u007.service")
	require.NoError(t, err)
	require.Equal(t, "inactive", u.DesiredState, "the unit that existed is left as it was")
}
