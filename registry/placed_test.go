package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// requireIndexInStep asserts that the index holds exactly the schedule's
// entries, keyed unit first, and that PlacementsOf answers every unit of
// the schedule (and one that is not scheduled) as the schedule says.
func requireIndexInStep(t *testing.T, ctx context.Context, reg *registry.Registry) {
	t.Helper()
	read := func(prefix string) map[string]string {
		resp, err := reg.Client().Get(ctx, reg.Prefix()+prefix, clientv3.WithPrefix())
		require.NoError(t, err)
		out := map[string]string{}
		for _, kv := range resp.Kvs {
			out[strings.TrimPrefix(string(kv.Key), reg.Prefix()+prefix)] = string(kv.Value)
		}
		return out
	}
	want := map[string]string{}
	for k, v := range read("schedule/") {
		m, name, _ := strings.Cut(k, "/")
		want[name+"/"+m] = v
	}
	require.Equal(t, want, read("placed/"), "index entries are the schedule's, keyed unit first")

	ps, _, err := reg.Placements(ctx)
	require.NoError(t, err)
	byUnit := map[string][]registry.Placement{}
	for _, p := range ps {
		byUnit[p.Name] = append(byUnit[p.Name], p)
	}
	for name, want := range byUnit {
		slices.SortFunc(want, func(a, b registry.Placement) int { return strings.Compare(a.Machine, b.Machine) })
		got, err := reg.PlacementsOf(ctx, name)
		require.NoError(t, err)
		require.Equal(t, want, got, "placements of %s", name)
	}
	got, err := reg.PlacementsOf(ctx, "never-placed.service")
	require.NoError(t, err)
	require.Empty(t, got)
}

// TestPlacementIndexKeptInStep: every writer of the schedule (ApplyPlan,
// ApplyDecisions, DropSchedule) keeps the index in step, through place,
// move, desired-state change, unplace and the drop of an absent machine's
// schedule larger than one transaction.
func TestPlacementIndexKeptInStep(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	rebuilt, err := reg.EnsurePlacementIndex(ctx, lead)
	require.NoError(t, err)
	require.True(t, rebuilt, "an empty cluster has no marker yet")
	rebuilt, err = reg.EnsurePlacementIndex(ctx, lead)
	require.NoError(t, err)
	require.False(t, rebuilt, "a complete index is left alone")

	put := func(m, name, hash string, s registry.State) registry.PlanOp {
		return registry.PlanOp{Put: true, Placement: registry.Placement{Machine: m, Name: name, Hash: hash, DesiredState: s}}
	}
	del := func(m, name string) registry.PlanOp {
		return registry.PlanOp{Placement: registry.Placement{Machine: m, Name: name}}
	}
	steps := []struct {
		name string
		ops  []registry.PlanOp
	}{
		{"place", []registry.PlanOp{put("m0", "web.service", "h1", registry.StateLaunched), put("m1", "db.service", "h2", registry.StateLoaded)}},
		{"move", []registry.PlanOp{del("m0", "web.service"), put("m1", "web.service", "h1", registry.StateLaunched)}},
		{"replace: two entries", []registry.PlanOp{put("m2", "web.service", "h3", registry.StateLaunched)}},
		{"desired state", []registry.PlanOp{put("m1", "db.service", "h2", registry.StateLaunched)}},
		{"unplace", []registry.PlanOp{del("m1", "web.service"), del("m1", "db.service")}},
	}
	for i, s := range steps {
		if i%2 == 0 {
			_, err = reg.ApplyPlan(ctx, lead, s.ops)
		} else {
			_, err = reg.ApplyDecisions(ctx, lead, s.ops, []registry.UnplacedOp{{Name: "x.service", Reason: "none fits"}})
		}
		require.NoError(t, err, s.name)
		requireIndexInStep(t, ctx, reg)
	}

	// 150 placements on a machine that is gone (m9) beside a present one's.
	p3, err := reg.Register(ctx, machine.Machine{ID: "m3", Hostname: "m3"}, 5*time.Second)
	require.NoError(t, err)
	defer p3.Close()
	var ops []registry.PlanOp
	for i := range 150 {
		name := fmt.Sprintf("u%03d.service", i)
		ops = append(ops, put("m9", name, "h", registry.StateLaunched), put("m3", name, "h", registry.StateLaunched))
	}
	n, err := reg.ApplyDecisions(ctx, lead, ops, nil)
	require.NoError(t, err)
	require.Equal(t, 300, n)
	requireIndexInStep(t, ctx, reg)
	require.NoError(t, reg.MarkAbsent(ctx, lead, "m9", time.Now()))
	_, err = reg.DropSchedule(ctx, lead, "m3")
	require.ErrorIs(t, err, registry.ErrConflict, "a present machine keeps its schedule")
	n, err = reg.DropSchedule(ctx, lead, "m9")
	require.NoError(t, err)
	require.Equal(t, 150, n)
	requireIndexInStep(t, ctx, reg)
	sched, _, err := reg.Schedule(ctx, "m9")
	require.NoError(t, err)
	require.Empty(t, sched)
	absent, err := reg.AbsentMachines(ctx)
	require.NoError(t, err)
	require.Empty(t, absent, "the absence record goes with the last batch")
	rebuilt, err = reg.EnsurePlacementIndex(ctx, lead)
	require.NoError(t, err)
	require.False(t, rebuilt)
}

// TestPlacementIndexMigration: schedules written by an engine without the
// index are read by listing the schedule until the next leader rebuilds the
// index; an index that lost step (an entry written without it) is rebuilt
// too; a deposed leader rebuilds nothing.
func TestPlacementIndexMigration(t *testing.T) {
	reg, ctx := newRegistry(t)
	cli := reg.Client()
	oldWrite := func(m, name, hash string) {
		t.Helper()
		v, err := json.Marshal(registry.Placement{Hash: hash, DesiredState: registry.StateLaunched})
		require.NoError(t, err)
		_, err = cli.Put(ctx, reg.Prefix()+"schedule/"+m+"/"+name, string(v))
		require.NoError(t, err)
	}
	oldWrite("m0", "web.service", "h1")
	oldWrite("m1", "web.service", "h1")
	oldWrite("m1", "db.service", "h2")
	_, err := cli.Put(ctx, reg.Prefix()+"placed/stale.service/m5", "{}") // garbage, no marker
	require.NoError(t, err)

	want := []registry.Placement{
		{Machine: "m0", Name: "web.service", Hash: "h1", DesiredState: registry.StateLaunched},
		{Machine: "m1", Name: "web.service", Hash: "h1", DesiredState: registry.StateLaunched},
	}
	got, err := reg.PlacementsOf(ctx, "web.service")
	require.NoError(t, err)
	require.Equal(t, want, got, "without the marker the schedule is listed")

	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	rebuilt, err := reg.EnsurePlacementIndex(ctx, lead)
	require.NoError(t, err)
	require.True(t, rebuilt)
	requireIndexInStep(t, ctx, reg)
	got, err = reg.PlacementsOf(ctx, "stale.service")
	require.NoError(t, err)
	require.Empty(t, got, "the rebuild drops entries the schedule does not have")

	// A placement written the old way is not in the index, so PlacementsOf
	// (now reading the index) misses it: proof it reads the index. The next
	// term's check sees the counts differ and rebuilds.
	oldWrite("m2", "web.service", "h1")
	got, err = reg.PlacementsOf(ctx, "web.service")
	require.NoError(t, err)
	require.Equal(t, want, got)
	rebuilt, err = reg.EnsurePlacementIndex(ctx, lead)
	require.NoError(t, err)
	require.True(t, rebuilt, "an index with fewer entries than the schedule is rebuilt")
	requireIndexInStep(t, ctx, reg)

	require.NoError(t, lead.Resign(ctx))
	_, err = cli.Delete(ctx, reg.Prefix()+"placed-version")
	require.NoError(t, err)
	_, err = reg.EnsurePlacementIndex(ctx, lead)
	require.ErrorIs(t, err, registry.ErrNotLeader)
	got, err = reg.PlacementsOf(ctx, "db.service")
	require.NoError(t, err)
	require.Equal(t, []registry.Placement{{Machine: "m1", Name: "db.service", Hash: "h2", DesiredState: registry.StateLaunched}}, got)
}

// etcdCounter counts the etcd requests of a client and the keys they
// returned (a count-only or keys-only range counts its keys too).
type etcdCounter struct{ requests, keys atomic.Int64 }

func (c *etcdCounter) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		c.requests.Add(1)
		switch r := reply.(type) {
		case *etcdserverpb.RangeResponse:
			c.keys.Add(max(r.Count, int64(len(r.Kvs))))
		case *etcdserverpb.TxnResponse:
			for _, op := range r.Responses {
				if rr := op.GetResponseRange(); rr != nil {
					c.keys.Add(max(rr.Count, int64(len(rr.Kvs))))
				}
			}
		}
		return err
	}
}

// BenchmarkPlacementsOf reads one unit's placements in clusters of 10 to
// 100,000 placements (10 per machine), through the index and through the
// listing it replaces. keys/op is what etcd returned, requests/op the round
// trips.
func BenchmarkPlacementsOf(b *testing.B) {
	e := etcdtest.Start(b)
	var cnt etcdCounter
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		MaxCallRecvMsgSize: 256 << 20,
		DialOptions:        []grpc.DialOption{grpc.WithChainUnaryInterceptor(cnt.interceptor())}})
	require.NoError(b, err)
	b.Cleanup(func() { _ = cli.Close() })
	ctx := context.Background()
	for _, size := range []int{10, 10_000, 100_000} {
		reg := registry.New(cli, registry.WithPrefix(fmt.Sprintf("/bench-%d/", size)), registry.WithRequestTimeout(time.Minute))
		lead, err := reg.Campaign(ctx, "engine", 10*time.Second)
		require.NoError(b, err)
		ops := make([]registry.PlanOp, size)
		for i := range ops {
			ops[i] = registry.PlanOp{Put: true, Placement: registry.Placement{
				Machine: fmt.Sprintf("m%05d", i/10), Name: fmt.Sprintf("u%06d.service", i), Hash: "h", DesiredState: registry.StateLaunched}}
		}
		_, err = reg.ApplyPlan(ctx, lead, ops)
		require.NoError(b, err)
		name := ops[size/2].Placement.Name
		run := func(b *testing.B) {
			cnt.requests.Store(0)
			cnt.keys.Store(0)
			for b.Loop() {
				ps, err := reg.PlacementsOf(ctx, name)
				if err != nil || len(ps) != 1 {
					b.Fatalf("placements of %s: %v %v", name, ps, err)
				}
			}
			b.ReportMetric(float64(cnt.requests.Load())/float64(b.N), "requests/op")
			b.ReportMetric(float64(cnt.keys.Load())/float64(b.N), "keys/op")
		}
		_, err = cli.Delete(ctx, reg.Prefix()+"placed-version")
		require.NoError(b, err)
		b.Run(fmt.Sprintf("scan/placements=%d", size), run)
		_, err = reg.EnsurePlacementIndex(ctx, lead)
		require.NoError(b, err)
		b.Run(fmt.Sprintf("index/placements=%d", size), run)
		require.NoError(b, lead.Resign(ctx))
	}
}

// TestApplyPlanKeepsOrderPerKey: a plan that writes one key several times,
// in transactions that can be in flight together, leaves the last write.
func TestApplyPlanKeepsOrderPerKey(t *testing.T) {
	reg, ctx := newRegistry(t)
	lead, err := reg.Campaign(ctx, "engine-a", time.Second)
	require.NoError(t, err)
	var ops []registry.PlanOp
	put := func(i int, state registry.State) registry.PlanOp {
		return registry.PlanOp{Put: true, Placement: registry.Placement{Machine: fmt.Sprintf("m%d", i%7), Name: fmt.Sprintf("u%03d.service", i), Hash: "h", DesiredState: state}}
	}
	// Three rounds over the same 300 keys, each round ~5 transactions:
	// put loaded, delete, put launched (the odd ones only).
	for i := range 300 {
		ops = append(ops, put(i, registry.StateLoaded))
	}
	for i := range 300 {
		ops = append(ops, registry.PlanOp{Placement: put(i, registry.StateLoaded).Placement})
	}
	for i := 1; i < 300; i += 2 {
		ops = append(ops, put(i, registry.StateLaunched))
	}
	n, err := reg.ApplyPlan(ctx, lead, ops)
	require.NoError(t, err)
	require.Equal(t, len(ops), n)
	ps, _, err := reg.Placements(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 150)
	for _, p := range ps {
		require.Equal(t, registry.StateLaunched, p.DesiredState, p.Name)
	}
	for i := range 300 {
		got, err := reg.PlacementsOf(ctx, fmt.Sprintf("u%03d.service", i))
		require.NoError(t, err)
		require.Len(t, got, i%2, "index entries of u%03d", i)
	}
}
