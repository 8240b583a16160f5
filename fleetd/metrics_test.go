package fleetd

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// leading is a test double of the engine: it always leads.
type leading struct{}

func (leading) Leading() bool { return true }

func TestMetrics(t *testing.T) {
	e := etcdtest.Start(t)
	m := newMetrics()
	cli, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(m.etcdInterceptor())}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	reg := registry.New(cli, registry.WithPrefix("/metrics-test/"))
	m.watchCluster(reg, leading{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p, err := reg.Register(ctx, machine.Machine{ID: "m1", Hostname: "h1"}, registry.MinTTL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Revoke(context.Background()) })
	rc := api.NewRegistryClient(reg)
	for _, u := range []struct{ name, state string }{{"a.service", "launched"}, {"b.service", "launched"}, {"c.service", "inactive"}} {
		_, err := rc.CreateUnit(ctx, &api.Unit{Name: u.name, DesiredState: u.state,
			Options: []*api.UnitOption{{Section: "Service", Name: "ExecStart", Value: "/bin/true"}}})
		require.NoError(t, err)
	}
	lead, err := reg.Campaign(ctx, "m1", 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lead.Resign(context.Background()) })
	a, err := reg.Unit(ctx, "a.service")
	require.NoError(t, err)
	_, err = reg.ApplyDecisions(ctx, lead,
		[]registry.PlanOp{{Put: true, Placement: registry.Placement{Machine: "m1", Name: "a.service", Hash: a.Hash, DesiredState: registry.StateLaunched}}},
		[]registry.UnplacedOp{{Name: "b.service", Reason: "no machine has metadata disk=ssd"}})
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

	resp, err = http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(b)
	for _, want := range []string{
		"fleet_machines 1\n",
		`fleet_units{desired_state="launched"} 2` + "\n",
		`fleet_units{desired_state="inactive"} 1` + "\n",
		`fleet_units{desired_state="loaded"} 0` + "\n",
		`fleet_placements{state="launched"} 1` + "\n",
		`fleet_unit_states{active_state="active"} 1` + "\n",
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
}
