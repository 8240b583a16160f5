package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/api/auth"
	"github.com/seed-a1ce88ea/fleet/internal/etcdtest"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/ui"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(etcdtest.LeakOptions(),
		// chromedp's reader of a closed browser connection ends on its own.
		goleak.IgnoreAnyFunction("github.com/chromedp/chromedp.(*Browser).run"),
	)...)
}

const (
	adminToken = "admin-secret-token"
	readToken  = "read-secret-token"
)

// cluster is a real etcd with fleet's registry, an API in front of it as
// fleetd serves it (dashboard files and API behind Authorize, tokens of
// role admin and read), and ways to play engine and agents: placements and
// published states are written directly, since no systemd runs here.
// The handler is the one fleetd serves (fleetd.newAPIServer).
type cluster struct {
	tb       testing.TB
	ctx      context.Context
	reg      *registry.Registry
	rc       api.Client
	lead     *registry.Leadership
	machines []*registry.Presence
	url      string
	// mux is fleetd's mux (dashboard files and API) without Authorize.
	mux *http.ServeMux
}

// newCluster starts it with the given number of machines; extra adds
// routes to fleetd's mux (endpoints other parts of fleet add).
func newCluster(tb testing.TB, machines int, extra ...func(*http.ServeMux)) *cluster {
	tb.Helper()
	e := etcdtest.Start(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	tb.Cleanup(cancel)
	reg := registry.New(e.Client(tb), registry.WithPrefix("/ui-test/"))
	c := &cluster{tb: tb, ctx: ctx, reg: reg, rc: api.NewRegistryClient(reg)}
	for i := range machines {
		m := machine.Machine{ID: fmt.Sprintf("%032x", 0xa11ce000+i), PublicIP: fmt.Sprintf("10.0.0.%d", i+1),
			Hostname: fmt.Sprintf("host-%d", i), Metadata: map[string]string{"region": []string{"us-east", "eu-west"}[i%2]}}
		p, err := reg.Register(ctx, m, 30*time.Second)
		require.NoError(tb, err)
		tb.Cleanup(func() { _ = p.Revoke(context.Background()) })
		c.machines = append(c.machines, p)
	}
	lead, err := reg.Campaign(ctx, "test-engine", 30*time.Second)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = lead.Resign(context.Background()) })
	_, err = reg.EnsurePlacementIndex(ctx, lead)
	require.NoError(tb, err)
	c.lead = lead

	toks, err := auth.ParseTokens(strings.NewReader("ops admin " + adminToken + "\nviewer read " + readToken + "\n"))
	require.NoError(tb, err)
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, ui.Handler())
	mux.Handle("/", api.NewServer(c.rc))
	for _, f := range extra {
		f(mux)
	}
	srv := httptest.NewServer(api.RefuseCrossOrigin(api.Authorize(auth.NewAuthenticator(toks, false), mux)))
	tb.Cleanup(srv.Close)
	c.url, c.mux = srv.URL, mux
	return c
}

// addUnits submits units name(0..n-1) launched, places unit i on machine
// i%len(machines) and publishes it active there, with 32 requests in
// flight.
func (c *cluster) addUnits(n int, name func(int) string) {
	c.tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: name(i), DesiredState: "launched", Options: []*api.UnitOption{
				{Section: "Service", Name: "ExecStart", Value: "/bin/sleep " + fmt.Sprint(1000+i)},
			}})
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(c.tb, err)
	}
	units, _, err := c.reg.Units(c.ctx)
	require.NoError(c.tb, err)
	hash := map[string]string{}
	for _, u := range units {
		hash[u.Name] = u.Hash
	}
	var ops []registry.PlanOp
	states := make([][]registry.UnitState, len(c.machines))
	for i := range n {
		m := i % len(c.machines)
		ops = append(ops, registry.PlanOp{Put: true, Placement: registry.Placement{
			Machine: c.machines[m].Machine().ID, Name: name(i), Hash: hash[name(i)], DesiredState: registry.StateLaunched}})
		states[m] = append(states[m], registry.UnitState{Name: name(i), Hash: hash[name(i)], LoadState: "loaded", ActiveState: "active", SubState: "running"})
	}
	_, err = c.reg.ApplyPlan(c.ctx, c.lead, ops)
	require.NoError(c.tb, err)
	for m, p := range c.machines {
		require.NoError(c.tb, p.PublishStates(c.ctx, states[m]))
	}
}

// publish records a unit's state on machine m as its agent would.
func (c *cluster) publish(m int, name, active, sub string) {
	c.tb.Helper()
	u, err := c.reg.Unit(c.ctx, name)
	require.NoError(c.tb, err)
	require.NoError(c.tb, c.machines[m].PublishState(c.ctx, registry.UnitState{
		Name: name, Hash: u.Hash, LoadState: "loaded", ActiveState: active, SubState: sub}))
}
