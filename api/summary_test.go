package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// summaryCluster submits units of every kind a summary tells apart:
// placed and reported, placed and not yet reported, unplaced with a
// reason, inactive, global, template instances sharing one file (with
// [X-Fleet] values that expand the instance name), and descriptions that
// JSON escapes.
func summaryCluster(t *testing.T) *cluster {
	c := newCluster(t)
	c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1"})
	c.addMachine(machine.Machine{ID: "m2", PublicIP: "10.0.0.2"})
	create := func(name, state string, o []*api.UnitOption) {
		_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: name, DesiredState: state, Options: o})
		require.NoError(t, err, name)
	}
	create("hello.service", "launched", helloOpts)
	create("quiet.service", "launched", opts("Unit", "Description", "a <b> & \"c\" \u2028 é", "Service", "ExecStart", "/bin/true"))
	create("nodesc.service", "loaded", opts("Service", "ExecStart", "/bin/true", "X-Fleet", "MachineMetadata", "rack=1"))
	create("off.service", "inactive", helloOpts)
	create("stuck.service", "launched", opts("Service", "ExecStart", "/bin/false", "X-Fleet", "MachineMetadata", "disk=ssd"))
	create("everywhere.service", "launched", opts("Unit", "Description", "global", "Service", "ExecStart", "/bin/true", "X-Fleet", "Global", "true"))
	create("notglobal.service", "launched", opts("Service", "ExecStart", "/bin/true", "X-Fleet", "Global", "false"))
	create("web@.service", "inactive", opts("Unit", "Description", "web %i", "Service", "ExecStart", "/bin/web %i", "X-Fleet", "MachineMetadata", "hostname=%i"))
	create("web@1.service", "launched", nil)
	create("web@2.service", "launched", nil)
	create("mon@.service", "inactive", opts("Service", "ExecStart", "/bin/mon %i", "X-Fleet", "Global", "true"))
	create("mon@a.service", "launched", nil)

	c.place("m1", "hello.service", registry.StateLaunched)
	c.publish("m1", "hello.service", "loaded", "active", "running")
	c.place("m2", "quiet.service", registry.StateLaunched) // not reported yet: inactive
	c.place("m2", "nodesc.service", registry.StateLoaded)
	c.publish("m2", "nodesc.service", "loaded", "inactive", "dead")
	c.place("m1", "web@1.service", registry.StateLaunched)
	c.publish("m1", "web@1.service", "loaded", "active", "running")
	c.place("m1", "everywhere.service", registry.StateLaunched)
	c.place("m2", "everywhere.service", registry.StateLaunched)
	_, err := c.reg.ApplyDecisions(c.ctx, c.lead, nil, []registry.UnplacedOp{{Name: "stuck.service", Reason: "no machine has metadata disk=ssd"}})
	require.NoError(t, err)
	return c
}

// wantSummaries is what a client without summaries works out from the
// units: what summaries must equal.
func wantSummaries(t *testing.T, c api.Client) []*api.UnitSummary {
	us, err := c.Units(context.Background())
	require.NoError(t, err)
	return api.SummariesOf(us)
}

// TestUnitSummariesMatchUnits checks the summaries of the registry client
// and of the HTTP API against the units' options, cold and from the cache,
// and after a unit's file changes.
func TestUnitSummariesMatchUnits(t *testing.T) {
	c := summaryCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	hc, err := api.NewHTTPClient(srv.URL, 10*time.Second)
	require.NoError(t, err)
	want := wantSummaries(t, c.rc)
	require.Len(t, want, 12)
	byName := map[string]*api.UnitSummary{}
	for _, s := range want {
		byName[s.Name] = s
	}
	require.True(t, byName["everywhere.service"].Global)
	require.True(t, byName["mon@a.service"].Global)
	require.False(t, byName["notglobal.service"].Global)
	require.Equal(t, "no machine has metadata disk=ssd", byName["stuck.service"].UnplacedReason)
	require.Equal(t, "inactive", byName["quiet.service"].CurrentState)
	require.Equal(t, "launched", byName["hello.service"].CurrentState)
	require.Equal(t, byName["web@1.service"].Hash, byName["web@2.service"].Hash)

	for round := range 2 { // a cold cache, then a warm one
		for _, cl := range []api.Client{c.rc, hc} {
			got, err := cl.(api.UnitSummarizer).UnitSummaries(c.ctx)
			require.NoError(t, err)
			require.Equal(t, want, got, "round %d", round)
		}
	}

	// Another file for a unit: a new hash, a new description.
	_, err = c.rc.ReplaceUnit(c.ctx, &api.Unit{Name: "hello.service", Options: opts("Unit", "Description", "Hello again", "Service", "ExecStart", "/bin/sleep 1")})
	require.NoError(t, err)
	want = wantSummaries(t, c.rc)
	got, err := hc.(api.UnitSummarizer).UnitSummaries(c.ctx)
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, "hello.service", got[1].Name)
	require.Equal(t, "Hello again", got[1].Description)
}

// unitsOnly hides the registry client's summaries, as a server without
// them.
type unitsOnly struct{ api.Client }

// TestUnitSummariesFallback checks that the HTTP client summarizes units
// itself against a server that answers ?view=summary with units, and that
// summaries come in pages like the units.
func TestUnitSummariesFallback(t *testing.T) {
	c := summaryCluster(t)
	want := wantSummaries(t, c.rc)
	old := serveTCP(t, api.NewServer(unitsOnly{c.rc}))
	a := call(t, old.URL, "GET", "/fleet/v1/units?view=summary", "")
	require.Equal(t, http.StatusOK, a.code)
	require.NotContains(t, a.json(t), "view")
	hc, err := api.NewHTTPClient(old.URL, 10*time.Second)
	require.NoError(t, err)
	got, err := hc.(api.UnitSummarizer).UnitSummaries(c.ctx)
	require.NoError(t, err)
	require.Equal(t, want, got)

	// Pages of 5 from a server with summaries, tokens sent back, as the
	// pages of units.
	srv := serveTCP(t, api.NewServer(c.rc))
	var paged []*api.UnitSummary
	q := url.Values{"view": {"summary"}, "pageSize": {"5"}}
	for pages := 1; ; pages++ {
		a := call(t, srv.URL, "GET", "/fleet/v1/units?"+q.Encode(), "")
		require.Equal(t, http.StatusOK, a.code, a.body)
		var p struct {
			View          string             `json:"view"`
			Units         []*api.UnitSummary `json:"units"`
			NextPageToken string             `json:"nextPageToken"`
		}
		require.NoError(t, json.Unmarshal([]byte(a.body), &p))
		require.Equal(t, "summary", p.View)
		paged = append(paged, p.Units...)
		if p.NextPageToken == "" {
			require.Equal(t, 3, pages)
			break
		}
		q.Set("nextPageToken", p.NextPageToken)
	}
	require.Equal(t, want, paged)

	a = call(t, srv.URL, "GET", "/fleet/v1/units?view=full", "")
	require.Equal(t, http.StatusBadRequest, a.code, a.body)
	require.Contains(t, a.body, `the only view of units is \"summary\"`)
}
