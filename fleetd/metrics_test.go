package fleetd

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// following is a test double of an engine that does not lead.
type following struct{}

func (following) Leading() bool                                { return false }
func (following) Counts(context.Context) (engine.Counts, bool) { return engine.Counts{}, false }

// rangeRecorder records the etcd range reads of a client while on.
type rangeRecorder struct {
	mu     sync.Mutex
	on     bool
	ranges []*etcdserverpb.RangeRequest
}

func (r *rangeRecorder) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		r.mu.Lock()
		if r.on {
			switch q := req.(type) {
			case *etcdserverpb.RangeRequest:
				r.ranges = append(r.ranges, q)
			case *etcdserverpb.TxnRequest:
				for _, op := range append(q.Success, q.Failure...) {
					if rr := op.GetRequestRange(); rr != nil {
						r.ranges = append(r.ranges, rr)
					}
				}
			}
		}
		r.mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// scrape GETs url with the recorder on and returns the body and the ranges
// read meanwhile.
func (r *rangeRecorder) scrape(t *testing.T, url string) (string, []*etcdserverpb.RangeRequest) {
	t.Helper()
	r.mu.Lock()
	r.on, r.ranges = true, nil
	r.mu.Unlock()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return string(b), r.ranges
}

// requireNoFullRead asserts that every range read was count-only or of
// machine id's own unit states.
func requireNoFullRead(t *testing.T, ranges []*etcdserverpb.RangeRequest, prefix, id string) {
	t.Helper()
	require.NotEmpty(t, ranges, "the recorder saw the scrape's reads")
	for _, rr := range ranges {
		if rr.CountOnly {
			continue
		}
		require.True(t, strings.HasPrefix(string(rr.Key), prefix+"states/"+id+"/"),
			"a scrape reads only count-only ranges and its machine's states, not %q", rr.Key)
	}
}

// TestMetrics scrapes the engine leader's fleetd and a follower's, twice
// each, in a cluster of 103 units: the figures are the cluster's, and no
// scrape reads the units, the schedule, the machines or every state.
func TestMetrics(t *testing.T) {
	const prefix = "/metrics-test/"
	e := etcdtest.Start(t)
	m := newMetrics()
	var rec rangeRecorder
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(m.etcdInterceptor(), rec.interceptor())}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	reg := registry.New(cli, registry.WithPrefix(prefix))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "h1"}, registry.MinTTL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Revoke(context.Background()) })
	rc := api.NewRegistryClient(reg)
	create := func(name, state string, opts ...*api.UnitOption) {
		t.Helper()
		_, err := rc.CreateUnit(ctx, &api.Unit{Name: name, DesiredState: state,
			Options: append([]*api.UnitOption{{Section: "Service", Name: "ExecStart", Value: "/bin/true"}}, opts...)})
		require.NoError(t, err)
	}
	create("a.service", "launched")
	create("b.service", "launched", &api.UnitOption{Section: "X-Fleet", Name: "MachineMetadata", Value: "disk=ssd"})
	create("c.service", "inactive")
	const n = 100
	for i := range n {
		create(fmt.Sprintf("n%03d.service", i), "launched")
	}

	// A real engine, on its own etcd client so that its reads are not the
	// scrape's.
	eng := engine.New(engine.Config{Registry: registry.New(e.Client(t), registry.WithPrefix(prefix)), ID: "m1",
		LeaderTTL: time.Second, ReconcileInterval: 5 * time.Second})
	ectx, stopEngine := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(ectx) }()
	t.Cleanup(func() { stopEngine(); <-done })
	m.watchCluster(reg, eng, "m1")
	require.Eventually(t, func() bool {
		ps, _, err := reg.Placements(ctx)
		_, uerr := reg.UnplacedReason(ctx, "b.service")
		return err == nil && len(ps) == n+1 && uerr == nil
	}, 20*time.Second, 20*time.Millisecond, "the engine places %d units and records why b.service fits nowhere", n+1)
	a, err := reg.Unit(ctx, "a.service")
	require.NoError(t, err)
	require.NoError(t, p.PublishState(ctx, registry.UnitState{Name: "a.service", Hash: a.Hash, LoadState: "loaded", ActiveState: "active", SubState: "running"}))

	mux := http.NewServeMux()
	mux.Handle("/metrics", m.handler())
	mux.Handle("/", m.instrument(api.NewServer(rc)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/fleet/v1/units/nope.service")
	require.NoError(t, err)
	_ = resp.Body.Close()
	m.observePlan(3*time.Millisecond, 2)

	for range 2 {
		text, ranges := rec.scrape(t, srv.URL+"/metrics")
		for _, want := range []string{
			"fleet_machines 1\n",
			fmt.Sprintf(`fleet_units{desired_state="launched"} %d`, n+2) + "\n",
			`fleet_units{desired_state="inactive"} 1` + "\n",
			`fleet_units{desired_state="loaded"} 0` + "\n",
			fmt.Sprintf(`fleet_placements{state="launched"} %d`, n+1) + "\n",
			`fleet_placements{state="loaded"} 0` + "\n",
			`fleet_machine_unit_states{active_state="active"} 1` + "\n",
			"fleet_unplaced_units 1\n",
			"fleet_engine_leader 1\n",
			`fleet_api_requests_total{code="404",method="GET"} 1` + "\n",
			`fleet_etcd_request_duration_seconds_count{method="/etcdserverpb.KV/Txn"}`,
			`fleet_etcd_request_duration_seconds_bucket{method="/etcdserverpb.KV/Range",le="+Inf"}`,
			"fleet_engine_placement_writes_total 2\n",
			"fleet_engine_reconcile_duration_seconds_count 1\n",
			"go_goroutines ",
		} {
			require.Contains(t, text, want)
		}
		requireNoFullRead(t, ranges, prefix, "m1")
	}

	// A follower (here: of machine m2, which runs no unit) reports what
	// count-only reads give exactly, and leaves the by-state gauges to the
	// leader.
	f := newMetrics()
	f.watchCluster(reg, following{}, "m2")
	fsrv := httptest.NewServer(f.handler())
	t.Cleanup(fsrv.Close)
	for range 2 {
		text, ranges := rec.scrape(t, fsrv.URL)
		for _, want := range []string{"fleet_machines 1\n", "fleet_unplaced_units 1\n", "fleet_engine_leader 0\n"} {
			require.Contains(t, text, want)
		}
		for _, absent := range []string{"fleet_units{", "fleet_placements{", "fleet_machine_unit_states{"} {
			require.NotContains(t, text, absent)
		}
		requireNoFullRead(t, ranges, prefix, "m2")
	}
}
