package registry

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
)

// TestListCacheFollows checks that listings served from memory equal
// listings read from etcd, at once after writes of every kind, and that
// the cache starts only when listings repeat and stops when they stop.
func TestListCacheFollows(t *testing.T) {
	e := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli := e.Client(t)
	r := New(cli, WithPrefix("/test/"))
	m1, err := r.Register(ctx, machine.Machine{ID: "m1", Hostname: "h1"}, MinTTL)
	require.NoError(t, err)
	defer m1.Close()
	lead, err := r.Campaign(ctx, "test", 5*time.Second)
	require.NoError(t, err)
	defer func() { _ = lead.Resign(context.Background()) }()
	var news []NewUnit
	for i := range 20 {
		news = append(news, NewUnit{Unit: Unit{Name: fmt.Sprintf("u%02d.service", i), Hash: fmt.Sprintf("h%02d", i), DesiredState: StateLaunched}, Body: "b"})
	}
	for _, err := range r.CreateUnits(ctx, news) {
		require.NoError(t, err)
	}
	place := func(name, hash string) {
		_, err := r.ApplyPlan(ctx, lead, []PlanOp{{Put: true, Placement: Placement{Machine: "m1", Name: name, Hash: hash, DesiredState: StateLaunched}}})
		require.NoError(t, err)
		require.NoError(t, m1.PublishState(ctx, UnitState{Name: name, Hash: hash, LoadState: "loaded", ActiveState: "active", SubState: "running"}))
	}
	for i := range 10 {
		place(fmt.Sprintf("u%02d.service", i), fmt.Sprintf("h%02d", i))
	}
	_, err = r.ApplyDecisions(ctx, lead, nil, []UnplacedOp{{Name: "u15.service", Reason: "no machine"}})
	require.NoError(t, err)

	lc := NewListCache(r, time.Minute)
	defer lc.Close()
	check := func(what string) {
		t.Helper()
		want, err := r.ListUnitsWithoutBodies(ctx)
		require.NoError(t, err)
		require.NoError(t, lc.Units(ctx, func(got UnitListing) error {
			require.Equal(t, want.Units, got.Units, what)
			require.Equal(t, want.Placements, got.Placements, what)
			require.Equal(t, want.Unplaced, got.Unplaced, what)
			for _, u := range want.Units {
				for _, m := range []string{"m1", "m2"} {
					require.Equal(t, want.Reported[[2]string{m, u.Name}], got.IsReported(m, u.Name), "%s: %s on %s", what, u.Name, m)
				}
			}
			return nil
		}))
		wantStates, err := r.ListStates(ctx)
		require.NoError(t, err)
		gotStates, err := lc.States(ctx)
		require.NoError(t, err)
		slices.SortFunc(gotStates, func(a, b UnitState) int {
			return cmp.Or(strings.Compare(a.Machine, b.Machine), strings.Compare(a.Name, b.Name))
		})
		require.Equal(t, wantStates, gotStates, what)
	}
	following := func() bool {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		return lc.live != nil
	}
	check("first listing, from etcd")
	require.Eventually(t, following, 5*time.Second, 10*time.Millisecond, "the second listing (States) starts following")
	check("from memory")

	// Writes of every kind are in the very next listing.
	require.NoError(t, r.CreateUnit(ctx, Unit{Name: "new.service", Hash: "hn", DesiredState: StateLoaded}, "b", false))
	place("u12.service", "h12")
	require.NoError(t, r.DestroyUnit(ctx, "u03.service"))
	require.NoError(t, m1.DeleteState(ctx, "u04.service"))
	_, err = r.ApplyPlan(ctx, lead, []PlanOp{{Put: false, Placement: Placement{Machine: "m1", Name: "u05.service"}}})
	require.NoError(t, err)
	_, err = r.ApplyDecisions(ctx, lead, nil, []UnplacedOp{{Name: "u15.service"}, {Name: "u16.service", Reason: "full"}})
	require.NoError(t, err)
	require.NoError(t, m1.PublishState(ctx, UnitState{Name: "u01.service", Hash: "h01", LoadState: "loaded", ActiveState: "failed", SubState: "failed", Reason: "x"}))
	check("after writes")
	require.True(t, following())

	// A write outside the prefix moves etcd's revision: the cache learns
	// it has seen everything under the prefix from a progress notification.
	_, err = cli.Put(ctx, "/elsewhere", "x")
	require.NoError(t, err)
	lc.mu.Lock()
	live := lc.live
	lc.mu.Unlock()
	check("after a write elsewhere")
	live.mu.RLock()
	rev := live.rev
	live.mu.RUnlock()
	head, err := cli.Get(ctx, "/elsewhere")
	require.NoError(t, err)
	require.Equal(t, head.Header.Revision, rev, "served from memory at etcd's revision")

	// Without listings it stops, and drops what it held.
	short := NewListCache(r, 200*time.Millisecond)
	defer short.Close()
	noop := func(UnitListing) error { return nil }
	require.NoError(t, short.Units(ctx, noop))
	require.NoError(t, short.Units(ctx, noop))
	require.Eventually(t, func() bool {
		short.mu.Lock()
		defer short.mu.Unlock()
		live = short.live
		return live != nil
	}, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		live.mu.RLock()
		defer live.mu.RUnlock()
		return live.err != nil && live.units == nil
	}, 5*time.Second, 20*time.Millisecond)
}
