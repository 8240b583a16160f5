package engine

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// hygieneFixture is a real etcd, a won leadership and a hygiene whose
// passes the test runs at times of its choosing.
func hygieneFixture(t *testing.T) (*registry.Registry, *registry.Leadership, *hygiene, context.Context) {
	t.Helper()
	e := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	reg := registry.New(e.Client(t), registry.WithPrefix("/hygiene/"))
	lead, err := reg.Campaign(ctx, "e1", time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lead.Resign(context.Background()) })
	cfg := Config{}
	cfg.setHygieneDefaults()
	return reg, lead, newHygiene(reg, lead, cfg), ctx
}

func bodyHashes(t *testing.T, ctx context.Context, reg *registry.Registry) []string {
	t.Helper()
	b, err := reg.Bodies(ctx)
	require.NoError(t, err)
	return sortedKeys(b)
}

// TestHygieneCollectsBodiesAfterGrace: a body is collected once two passes
// at least BodyGrace apart found it unreferenced; a body referenced by a
// unit or a placement never is, nor one that a unit took up between the
// passes (as a unit record written just after its body would).
func TestHygieneCollectsBodiesAfterGrace(t *testing.T) {
	reg, lead, h, ctx := hygieneFixture(t)
	grace := h.cfg.BodyGrace
	create := func(name, hash string) {
		t.Helper()
		require.NoError(t, reg.CreateUnit(ctx, registry.Unit{Name: name, Hash: hash, DesiredState: registry.StateLaunched}, "body "+hash, true))
	}
	create("web.service", "old")
	create("web.service", "new") // --replace: "old" is referenced by nothing
	create("db.service", "placed")
	_, err := reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: "m1", Name: "db.service", Hash: "placed", DesiredState: registry.StateLaunched}}})
	require.NoError(t, err)
	create("db.service", "db2") // "placed" stays referenced by the schedule
	// A body alone, as a client writing the body before the unit would
	// leave it for a moment.
	_, err = reg.Client().Put(ctx, "/hygiene/bodies/early", "body early")
	require.NoError(t, err)

	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	r, err := h.pass(ctx, t0)
	require.NoError(t, err)
	require.Zero(t, r.bodies, "the first sighting collects nothing")

	create("cache.service", "early") // its unit arrives
	r, err = h.pass(ctx, t0.Add(grace/2))
	require.NoError(t, err)
	require.Zero(t, r.bodies, "within the grace period")
	require.Equal(t, []string{"db2", "early", "new", "old", "placed"}, bodyHashes(t, ctx, reg))

	r, err = h.pass(ctx, t0.Add(grace))
	require.NoError(t, err)
	require.Equal(t, 1, r.bodies)
	require.Equal(t, []string{"db2", "early", "new", "placed"}, bodyHashes(t, ctx, reg), "only the unreferenced body goes")

	// A body unreferenced again starts its grace anew.
	require.NoError(t, reg.DestroyUnit(ctx, "cache.service"))
	r, err = h.pass(ctx, t0.Add(2*grace))
	require.NoError(t, err)
	require.Zero(t, r.bodies)
	r, err = h.pass(ctx, t0.Add(3*grace))
	require.NoError(t, err)
	require.Equal(t, 1, r.bodies)
	require.Equal(t, []string{"db2", "new", "placed"}, bodyHashes(t, ctx, reg))
}

// TestHygieneDropsLongAbsentMachines: the schedule of a machine absent for
// MachineGCAfter goes; one absent for less, and a present one, stay; a
// machine that came back starts its absence anew when it leaves again.
func TestHygieneDropsLongAbsentMachines(t *testing.T) {
	reg, lead, h, ctx := hygieneFixture(t)
	after := h.cfg.MachineGCAfter
	p, err := reg.Register(ctx, machine.Machine{ID: "present", Hostname: "present"}, 5*time.Second)
	require.NoError(t, err)
	defer p.Close()
	place := func(m, name string) {
		t.Helper()
		_, err := reg.ApplyPlan(ctx, lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: m, Name: name, Hash: "h", DesiredState: registry.StateLaunched}}})
		require.NoError(t, err)
	}
	scheduled := func() []string {
		ps, _, err := reg.Placements(ctx)
		require.NoError(t, err)
		var out []string
		for _, p := range ps {
			out = append(out, p.Machine+"/"+p.Name)
		}
		sort.Strings(out)
		return out
	}
	place("present", "global.service")
	place("gone-long", "global.service")
	place("gone-long", "pinned.service")

	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	r, err := h.pass(ctx, t0)
	require.NoError(t, err)
	require.Equal(t, 1, r.marked)
	place("gone-short", "global.service") // a machine leaving later
	r, err = h.pass(ctx, t0.Add(after/2))
	require.NoError(t, err)
	require.Equal(t, 1, r.marked)

	r, err = h.pass(ctx, t0.Add(after-time.Second))
	require.NoError(t, err)
	require.Zero(t, r.machines, "not absent long enough yet")
	require.Len(t, scheduled(), 4)

	r, err = h.pass(ctx, t0.Add(after))
	require.NoError(t, err)
	require.Equal(t, 1, r.machines)
	require.Equal(t, 2, r.placements)
	require.Equal(t, []string{"gone-short/global.service", "present/global.service"}, scheduled())

	// gone-short comes back and leaves again: its absence counts from its
	// last departure, not its first.
	back, err := reg.Register(ctx, machine.Machine{ID: "gone-short", Hostname: "gone-short"}, 2*time.Second)
	require.NoError(t, err)
	require.NoError(t, back.Revoke(ctx))
	r, err = h.pass(ctx, t0.Add(after*3/2))
	require.NoError(t, err)
	require.Equal(t, 1, r.marked, "marked absent again, from now")
	require.Zero(t, r.machines)
	require.Equal(t, []string{"gone-short/global.service", "present/global.service"}, scheduled())
	absent, err := reg.AbsentMachines(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]time.Time{"gone-short": t0.Add(after * 3 / 2)}, absent)
}

// TestHygieneCompacts: the first compaction comes CompactRetention after
// the first pass, to the revision that pass saw; reads before it are gone.
func TestHygieneCompacts(t *testing.T) {
	reg, _, h, ctx := hygieneFixture(t)
	keep := h.cfg.CompactRetention
	put := func() int64 {
		resp, err := reg.Client().Put(ctx, "/hygiene/x", "v")
		require.NoError(t, err)
		return resp.Header.Revision
	}
	before := put()
	put()
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	r, err := h.pass(ctx, t0)
	require.NoError(t, err)
	require.Zero(t, r.compacted)
	seen, err := reg.Revision(ctx)
	require.NoError(t, err)
	put()
	r, err = h.pass(ctx, t0.Add(keep/2))
	require.NoError(t, err)
	require.Zero(t, r.compacted, "nothing is old enough yet")
	put()
	r, err = h.pass(ctx, t0.Add(keep))
	require.NoError(t, err)
	require.Equal(t, seen, r.compacted)

	_, err = reg.Client().Get(ctx, "/hygiene/x", clientv3.WithRev(before))
	require.ErrorIs(t, err, rpctypes.ErrCompacted)
	r, err = h.pass(ctx, t0.Add(keep*3/2))
	require.NoError(t, err)
	require.Positive(t, r.compacted, "the pass of keep/2 is due now")
	require.Greater(t, r.compacted, seen)
}
