package api_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
)

func TestMachineMetadataPatch(t *testing.T) {
	for _, name := range []string{"registry", "http-tcp"} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			cl := clients(t, c)[name]
			ctx := c.ctx
			c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1", Metadata: map[string]string{"role": "web"}})
			c.addMachine(machine.Machine{ID: "m2", PublicIP: "10.0.0.2", Metadata: map[string]string{"role": "db", "disk": "hdd"}})

			require.NoError(t, cl.SetMachineMetadata(ctx, []api.MachineMetadataOp{
				{Op: "add", Path: api.MetadataPath("m1", "disk"), Value: "ssd"},
				{Op: "replace", Path: api.MetadataPath("m2", "disk"), Value: "ssd"},
				{Op: "remove", Path: api.MetadataPath("m2", "role")},           // a configured key
				{Op: "add", Path: api.MetadataPath("m3", "zone"), Value: "eu"}, // not (yet) a member
			}))
			ms, err := cl.Machines(ctx)
			require.NoError(t, err)
			require.Equal(t, []api.Machine{
				{ID: "m1", PrimaryIP: "10.0.0.1", Metadata: map[string]string{"role": "web", "disk": "ssd"}, State: "active"},
				{ID: "m2", PrimaryIP: "10.0.0.2", Metadata: map[string]string{"disk": "ssd"}, State: "active"},
			}, ms)

			// An invalid operation anywhere applies none.
			err = cl.SetMachineMetadata(ctx, []api.MachineMetadataOp{
				{Op: "remove", Path: api.MetadataPath("m1", "disk")},
				{Op: "add", Path: api.MetadataPath("m1", "x")},
			})
			require.ErrorIs(t, err, api.ErrInvalid)
			require.ErrorContains(t, err, "operation 2: invalid value")
			ms, err = cl.Machines(ctx)
			require.NoError(t, err)
			require.Equal(t, "ssd", ms[0].Metadata["disk"])

			// m3 joins: its dynamic metadata was waiting for it. It leaves and
			// rejoins: still there.
			c.addMachine(machine.Machine{ID: "m3", PublicIP: "10.0.0.3"})
			ms, err = cl.Machines(ctx)
			require.NoError(t, err)
			require.Equal(t, map[string]string{"zone": "eu"}, ms[2].Metadata)
			require.NoError(t, c.machines["m3"].Revoke(ctx))
			c.addMachine(machine.Machine{ID: "m3", PublicIP: "10.0.0.3", Metadata: map[string]string{"zone": "us"}})
			ms, err = cl.Machines(ctx)
			require.NoError(t, err)
			require.Equal(t, map[string]string{"zone": "eu"}, ms[2].Metadata, "dynamic metadata wins over configured")
		})
	}
}

// TestMachineMetadataFleetClients sends PATCH bodies as fleet's clients did.
func TestMachineMetadataFleetClients(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1", Metadata: map[string]string{"hostname": "h1"}})

	// fleet's functional tests wrapped the value in an object and sent no
	// Content-Type; fleet's decoder matched "Path" case-insensitively.
	a := call(t, srv.URL, "PATCH", "/fleet/v1/machines", `[{"op":"add","Path":"/m1/metadata/foo","Value":{"value":"bar"}}]`, "Content-Type", "")
	require.Equal(t, http.StatusNoContent, a.code, a.body)
	require.Equal(t, "application/json", a.header.Get("Content-Type"), "fleet answered its 204 as JSON")
	m := call(t, srv.URL, "GET", "/fleet/v1/machines", "").json(t)["machines"].([]any)[0].(map[string]any)
	require.Equal(t, map[string]any{"hostname": "h1", "foo": "bar"}, m["metadata"])

	a = call(t, srv.URL, "PATCH", "/fleet/v1/machines", `[{"op":"remove","path":"/m1/metadata/foo","value":{"value":""}}]`)
	require.Equal(t, http.StatusNoContent, a.code, a.body)
	m = call(t, srv.URL, "GET", "/fleet/v1/machines", "").json(t)["machines"].([]any)[0].(map[string]any)
	require.Equal(t, map[string]any{"hostname": "h1"}, m["metadata"])
}

func TestMachineAndStatePages(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: "a.service", Options: helloOpts})
	require.NoError(t, err)
	for i := range 105 {
		id := fmt.Sprintf("m%03d", i)
		c.addMachine(machine.Machine{ID: id, PublicIP: "10.0.0.1"})
		c.publish(id, "a.service", "loaded", "active", "running")
	}
	for _, tt := range []struct{ path, key string }{{"/fleet/v1/machines", "machines"}, {"/fleet/v1/state", "states"}} {
		p1 := call(t, srv.URL, "GET", tt.path, "").json(t)
		require.Len(t, p1[tt.key], 100)
		tok := p1["nextPageToken"].(string)
		p2 := call(t, srv.URL, "GET", tt.path+"?nextPageToken="+tok, "").json(t)
		require.Len(t, p2[tt.key], 5)
		require.NotContains(t, p2, "nextPageToken")
	}
	// ?pageSize= (an extension) asks for other page sizes; its tokens need
	// the same pageSize.
	p1 := call(t, srv.URL, "GET", "/fleet/v1/machines?pageSize=60", "").json(t)
	require.Len(t, p1["machines"], 60)
	tok := p1["nextPageToken"].(string)
	p2 := call(t, srv.URL, "GET", "/fleet/v1/machines?pageSize=60&nextPageToken="+tok, "").json(t)
	require.Len(t, p2["machines"], 45)
	require.NotContains(t, p2, "nextPageToken")
	require.Equal(t, http.StatusBadRequest, call(t, srv.URL, "GET", "/fleet/v1/machines?nextPageToken="+tok, "").code)

	// Filters apply before pages.
	p := call(t, srv.URL, "GET", "/fleet/v1/state?unitName=a.service&machineID=m104&machineID=m000", "").json(t)
	require.Len(t, p["states"], 2)

	hc, err := api.NewHTTPClient(srv.URL, 5*time.Second)
	require.NoError(t, err)
	ms, err := hc.Machines(c.ctx)
	require.NoError(t, err)
	require.Len(t, ms, 105)
	ss, err := hc.UnitStates(c.ctx, api.StateFilter{UnitNames: []string{"a.service"}})
	require.NoError(t, err)
	require.Len(t, ss, 105)
	require.Equal(t, "m104", ss[104].MachineID)
	ss, err = hc.UnitStates(c.ctx, api.StateFilter{MachineIDs: []string{"m007"}})
	require.NoError(t, err)
	require.Len(t, ss, 1)
}

func TestStateFilterAcrossClients(t *testing.T) {
	for _, name := range []string{"registry", "http-unix"} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			cl := clients(t, c)[name]
			for _, id := range []string{"m1", "m2"} {
				c.addMachine(machine.Machine{ID: id})
			}
			for _, n := range []string{"a.service", "b.service"} {
				_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: n, Options: helloOpts})
				require.NoError(t, err)
			}
			c.publish("m1", "a.service", "loaded", "active", "running")
			c.publish("m2", "a.service", "loaded", "failed", "failed")
			c.publish("m2", "b.service", "loaded", "active", "running")
			names := func(f api.StateFilter) []string {
				ss, err := cl.UnitStates(context.Background(), f)
				require.NoError(t, err)
				var out []string
				for _, s := range ss {
					out = append(out, s.Name+"@"+s.MachineID)
				}
				return out
			}
			require.Equal(t, []string{"a.service@m1", "a.service@m2", "b.service@m2"}, names(api.StateFilter{}))
			require.Equal(t, []string{"a.service@m1", "a.service@m2"}, names(api.StateFilter{UnitNames: []string{"a.service", "a.service"}}))
			require.Equal(t, []string{"a.service@m2", "b.service@m2"}, names(api.StateFilter{MachineIDs: []string{"m2"}}))
			require.Equal(t, []string{"b.service@m2"}, names(api.StateFilter{MachineIDs: []string{"m2"}, UnitNames: []string{"b.service"}}))
			require.Empty(t, names(api.StateFilter{UnitNames: []string{"nope.service"}}))
		})
	}
}
