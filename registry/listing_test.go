package registry_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestBodiesAtListingRevision reads a listing without bodies, then the
// bodies at its revision: a body replaced and deleted since is still the
// listing's, and both ways of reading (single gets, one range) agree.
func TestBodiesAtListingRevision(t *testing.T) {
	reg, ctx := newRegistry(t)
	const n = 600 // more than BodiesAt reads with single gets
	var news []registry.NewUnit
	var hashes []string
	for i := range n {
		h := fmt.Sprintf("%040x", i+1)
		hashes = append(hashes, h)
		news = append(news, registry.NewUnit{Unit: registry.Unit{Name: fmt.Sprintf("u%03d.service", i), Hash: h, DesiredState: registry.StateLaunched}, Body: "body " + h})
	}
	for _, err := range reg.CreateUnits(ctx, news) {
		require.NoError(t, err)
	}
	l, err := reg.ListUnitsWithoutBodies(ctx)
	require.NoError(t, err)
	require.Len(t, l.Units, n)
	require.Empty(t, l.Bodies)
	full, err := reg.ListUnits(ctx)
	require.NoError(t, err)
	require.Equal(t, l.Units, full.Units)
	require.Equal(t, l.Placements, full.Placements)

	// The first unit gets another body; its old one is removed.
	require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: "u000.service", Hash: "ff", DesiredState: registry.StateLaunched}, "new body", true))
	_, err = reg.Client().Delete(ctx, "/test/bodies/"+hashes[0])
	require.NoError(t, err)

	for _, hs := range [][]string{hashes[:3], hashes} {
		got, err := reg.BodiesAt(ctx, l.Rev, slices.Concat(hs, []string{"missing"}))
		require.NoError(t, err)
		require.Equal(t, len(hs), len(got))
		for _, h := range hs {
			require.Equal(t, "body "+h, got[h])
		}
	}
	now, err := reg.BodiesAt(ctx, 0, hashes[:2])
	require.NoError(t, err)
	require.Equal(t, map[string]string{hashes[1]: "body " + hashes[1]}, now, "at the current revision the removed body is gone")
}
