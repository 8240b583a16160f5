package api_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, etcdtest.LeakOptions()...)
}

// cluster is a real etcd with a registry, the registry client over it, and
// a way to play engine and agents: write placements and publish states.
type cluster struct {
	t   *testing.T
	ctx context.Context
	reg *registry.Registry
	rc  api.Client
	// lead is the fake engine's leadership, won on first use.
	lead     *registry.Leadership
	machines map[string]*registry.Presence
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	e := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	reg := registry.New(e.Client(t), registry.WithPrefix("/test/"))
	return &cluster{t: t, ctx: ctx, reg: reg, rc: api.NewRegistryClient(reg), machines: map[string]*registry.Presence{}}
}

// addMachine registers a machine until the test ends.
func (c *cluster) addMachine(m machine.Machine) {
	c.t.Helper()
	if m.Hostname == "" {
		m.Hostname = "host-" + m.ID
	}
	p, err := c.reg.Register(c.ctx, m, registry.MinTTL)
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = p.Revoke(context.Background()) })
	c.machines[m.ID] = p
}

// place writes a placement as the engine leader would.
func (c *cluster) place(machineID, name string, state registry.State) {
	c.t.Helper()
	if c.lead == nil {
		lead, err := c.reg.Campaign(c.ctx, "test-engine", 5*time.Second)
		require.NoError(c.t, err)
		c.t.Cleanup(func() { _ = lead.Resign(context.Background()) })
		c.lead = lead
		// As an engine leader starts its term: unit reads then use the
		// unit->placement index.
		_, err = c.reg.EnsurePlacementIndex(c.ctx, lead)
		require.NoError(c.t, err)
	}
	u, err := c.reg.Unit(c.ctx, name)
	require.NoError(c.t, err)
	_, err = c.reg.ApplyPlan(c.ctx, c.lead, []registry.PlanOp{{Put: true, Placement: registry.Placement{
		Machine: machineID, Name: name, Hash: u.Hash, DesiredState: state,
	}}})
	require.NoError(c.t, err)
}

// publish records a unit state as machineID's agent would.
func (c *cluster) publish(machineID, name, load, active, sub string) {
	c.t.Helper()
	u, err := c.reg.Unit(c.ctx, name)
	require.NoError(c.t, err)
	require.NoError(c.t, c.machines[machineID].PublishState(c.ctx, registry.UnitState{
		Name: name, Hash: u.Hash, LoadState: load, ActiveState: active, SubState: sub,
	}))
}

// serveTCP serves h on a loopback TCP port until the test ends.
func serveTCP(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// serveUnix serves h on a unix socket until the test ends and returns the
// endpoint ("unix:///...").
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleet.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + path
}

func opts(lines ...string) []*api.UnitOption {
	var out []*api.UnitOption
	for i := 0; i+2 < len(lines); i += 3 {
		out = append(out, &api.UnitOption{Section: lines[i], Name: lines[i+1], Value: lines[i+2]})
	}
	return out
}

var helloOpts = opts(
	"Unit", "Description", "Hello",
	"Service", "ExecStart", "/bin/sleep 1000",
)
