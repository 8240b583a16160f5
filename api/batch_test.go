package api_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
)

// TestUnitBatches: a batch of more units than one transaction holds is
// created whole, each unit checked as CreateUnit checks it; a unit that
// exists, one given twice and one refused get their own error and the rest
// are created all the same. Destroying in a batch says which were not
// there. Through the registry client and over HTTP.
func TestUnitBatches(t *testing.T) {
	c := newCluster(t)
	for via, cl := range clients(t, c) {
		t.Run(via, func(t *testing.T) {
			b := cl.(api.UnitBatcher)
			name := func(i int) string { return fmt.Sprintf("%s-%03d.service", via, i) }
			_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: name(7), Options: helloOpts})
			require.NoError(t, err)
			var us []*api.Unit
			for i := range 150 {
				us = append(us, &api.Unit{Name: name(i), DesiredState: "launched",
					Options: opts("Service", "ExecStart", fmt.Sprintf("/bin/sleep %d", i%10))})
			}
			us = append(us,
				&api.Unit{Name: name(100), Options: helloOpts},
				&api.Unit{Name: via + "-bad.service", Options: opts("X-Fleet", "MachineOf", "a.service", "X-Fleet", "Global", "true")},
			)
			rs := b.CreateUnits(c.ctx, us)
			require.Len(t, rs, len(us))
			for i, r := range rs {
				switch {
				case i == 7 || i == 150:
					require.True(t, errors.Is(r.Err, api.ErrExists), "%s: %v", us[i].Name, r.Err)
				case i == 151:
					require.True(t, errors.Is(r.Err, api.ErrInvalid), "%v", r.Err)
				default:
					require.NoError(t, r.Err, us[i].Name)
				}
			}
			u, err := c.rc.Unit(c.ctx, name(149))
			require.NoError(t, err)
			require.Equal(t, "launched", u.DesiredState)
			require.Equal(t, "/bin/sleep 9", u.Options[0].Value)
			u, err = c.rc.Unit(c.ctx, name(7))
			require.NoError(t, err)
			require.Equal(t, "inactive", u.DesiredState, "the unit that existed is left as it was")

			var names []string
			for i := range 150 {
				names = append(names, name(i))
			}
			names = append(names, name(3), via+"-none.service")
			errs := b.DestroyUnits(c.ctx, names)
			require.Len(t, errs, len(names))
			for i, err := range errs {
				if i < 150 {
					require.NoError(t, err, names[i])
				} else {
					require.True(t, errors.Is(err, api.ErrNotFound), "%s: %v", names[i], err)
				}
			}
			_, err = c.rc.Unit(c.ctx, name(42))
			require.True(t, errors.Is(err, api.ErrNotFound))
		})
	}
	all, err := c.rc.Units(c.ctx)
	require.NoError(t, err)
	require.Empty(t, all)

	// A server whose client takes no batches says so; the HTTP client
	// answers ErrNoBatch, and fleetctl sends one request per unit.
	hc, err := api.NewHTTPClient(serveTCP(t, api.NewServer(struct{ api.Client }{c.rc})).URL, 0)
	require.NoError(t, err)
	rs := hc.(api.UnitBatcher).CreateUnits(c.ctx, []*api.Unit{{Name: "x.service", Options: helloOpts}})
	require.True(t, errors.Is(rs[0].Err, api.ErrNoBatch), "%v", rs[0].Err)
}
