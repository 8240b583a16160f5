package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
)

// TestUnitBatches: a batch of more units than one transaction holds is
// created whole, each unit checked as CreateUnit checks it; a unit that
// exists, one given twice and one refused get their own error and the rest
// are created all the same. Destroying in a batch says which were not
// there. Through the registry client and over HTTP.
func TestUnitBatches(t *testing.T) {
	c := newCluster(t)
	for via, cl := range clients(t, c) {
		t.Run(via, func(t *testing.T) {
			b := cl.(api.UnitBatcher)
			name := func(i int) string { return fmt.Sprintf("%s-%03d.service", via, i) }
			_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: name(7), Options: helloOpts})
			require.NoError(t, err)
			var us []*api.Unit
			for i := range 150 {
				us = append(us, &api.Unit{Name: name(i), DesiredState: "launched",
					Options: opts("Service", "ExecStart", fmt.Sprintf("/bin/sleep %d", i%10))})
			}
			us = append(us,
				&api.Unit{Name: name(100), Options: helloOpts},
				&api.Unit{Name: via + "-bad.service", Options: opts("X-Fleet", "MachineOf", "a.service", "X-Fleet", "Global", "true")},
			)
			rs := b.CreateUnits(c.ctx, us)
			require.Len(t, rs, len(us))
			for i, r := range rs {
				switch {
				case i == 7 || i == 150:
					require.True(t, errors.Is(r.Err, api.ErrExists), "%s: %v", us[i].Name, r.Err)
				case i == 151:
					require.True(t, errors.Is(r.Err, api.ErrInvalid), "%v", r.Err)
				default:
					require.NoError(t, r.Err, us[i].Name)
				}
			}
			u, err := c.rc.Unit(c.ctx, name(149))
			require.NoError(t, err)
			require.Equal(t, "launched", u.DesiredState)
			require.Equal(t, "/bin/sleep 9", u.Options[0].Value)
			u, err = c.rc.Unit(c.ctx, name(7))
			require.NoError(t, err)
			require.Equal(t, "inactive", u.DesiredState, "the unit that existed is left as it was")

			var names []string
			for i := range 150 {
				names = append(names, name(i))
			}
			names = append(names, name(3), via+"-none.service")
			errs := b.DestroyUnits(c.ctx, names)
			require.Len(t, errs, len(names))
			for i, err := range errs {
				if i < 150 {
					require.NoError(t, err, names[i])
				} else {
					require.True(t, errors.Is(err, api.ErrNotFound), "%s: %v", names[i], err)
				}
			}
			_, err = c.rc.Unit(c.ctx, name(42))
			require.True(t, errors.Is(err, api.ErrNotFound))
		})
	}
	all, err := c.rc.Units(c.ctx)
	require.NoError(t, err)
	require.Empty(t, all)

	// A server whose client takes no batches says so; the HTTP client
	// answers ErrNoBatch, and fleetctl sends one request per unit.
	hc, err := api.NewHTTPClient(serveTCP(t, api.NewServer(struct{ api.Client }{c.rc})).URL, 0)
	require.NoError(t, err)
	rs := hc.(api.UnitBatcher).CreateUnits(c.ctx, []*api.Unit{{Name: "x.service", Options: helloOpts}})
	require.True(t, errors.Is(rs[0].Err, api.ErrNoBatch), "%v", rs[0].Err)
}

// TestDiscoveryBatches: the discovery document describes the batch
// methods as the server serves them: each method, sent to its path with a
// body of its request schema's shape, creates or destroys the units and
// answers a result per unit, with the fields the result schema names.
func TestDiscoveryBatches(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	var doc struct {
		BasePath string `json:"basePath"`
		Schemas  map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"schemas"`
		Resources map[string]struct {
			Methods map[string]struct {
				HTTPMethod string `json:"httpMethod"`
				Path       string `json:"path"`
				Request    struct {
					Ref string `json:"$ref"`
				} `json:"request"`
				Response struct {
					Ref string `json:"$ref"`
				} `json:"response"`
			} `json:"methods"`
		} `json:"resources"`
	}
	a := call(t, srv.URL, "GET", "/fleet/v1/discovery", "")
	require.NoError(t, json.Unmarshal([]byte(a.body), &doc))
	methods := doc.Resources["UnitBatch"].Methods
	require.Len(t, methods, 2)

	for _, step := range []struct {
		method string
		body   func(field string) string
	}{
		{"Create", func(field string) string {
			return `{"` + field + `":[{"name":"a.service","options":[{"section":"Service","name":"ExecStart","value":"/bin/true"}]},` +
				`{"name":"b.service","desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/true"}]}]}`
		}},
		{"Delete", func(field string) string { return `{"` + field + `":["a.service","b.service","none.service"]}` }},
	} {
		m, ok := methods[step.method]
		require.True(t, ok, "UnitBatch.%s", step.method)
		req := doc.Schemas[m.Request.Ref].Properties
		require.Len(t, req, 1, "UnitBatch.%s's request schema %s", step.method, m.Request.Ref)
		var field string
		for f := range req {
			field = f
		}
		got := call(t, srv.URL, m.HTTPMethod, doc.BasePath+m.Path, step.body(field))
		require.Equal(t, http.StatusOK, got.code, "UnitBatch.%s: %s", step.method, got.body)
		require.Contains(t, doc.Schemas[m.Response.Ref].Properties, "results")
		var ans struct {
			Results []map[string]json.RawMessage `json:"results"`
		}
		require.NoError(t, json.Unmarshal([]byte(got.body), &ans))
		result := doc.Schemas["UnitBatchResult"].Properties
		for _, r := range ans.Results {
			for k := range r {
				require.Contains(t, result, k, "a result field the document names")
			}
		}
		switch step.method {
		case "Create":
			require.Len(t, ans.Results, 2)
			require.Empty(t, ans.Results[0])
			u, err := c.rc.Unit(c.ctx, "b.service")
			require.NoError(t, err)
			require.Equal(t, "launched", u.DesiredState)
		case "Delete":
			require.Len(t, ans.Results, 3)
			require.Empty(t, ans.Results[0])
			require.Contains(t, string(ans.Results[2]["error"]), "404")
			_, err := c.rc.Unit(c.ctx, "a.service")
			require.ErrorIs(t, err, api.ErrNotFound)
		}
	}
}

// TestBatchAudited: a batch call, whose audit is recorded beside its work,
// is audited once, as answered (200), in the log and in the event stream.
func TestBatchAudited(t *testing.T) {
	c := newCluster(t)
	logs := &logRecorder{}
	srv := serveTCP(t, api.NewServer(c.rc, api.WithLogger(slog.New(logs))))
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	events, done := apiCallEvents(t, ctx, c, 10)

	a := call(t, srv.URL, "POST", "/fleet/v1/units", `{"units":[`+helloJSON[:len(helloJSON)-1]+`,"name":"a.service"},`+helloJSON[:len(helloJSON)-1]+`,"name":"b.service"}]}`)
	require.Equal(t, http.StatusOK, a.code, a.body)
	a = call(t, srv.URL, "DELETE", "/fleet/v1/units", `{"names":["a.service","b.service"]}`)
	require.Equal(t, http.StatusOK, a.code, a.body)
	var got []string
	for _, l := range logs.withMsg("audit") {
		got = append(got, l["method"]+" "+l["action"]+" "+l["detail"]+" "+l["status"])
	}
	require.Equal(t, []string{"POST unit.create-batch 2 units 200", "DELETE unit.destroy-batch 2 units 200"}, got)
	for _, action := range []string{"unit.create-batch", "unit.destroy-batch"} {
		select {
		case e := <-events:
			require.Equal(t, action, e.Action)
			require.Equal(t, "200 OK", e.Result)
		case <-time.After(10 * time.Second):
			t.Fatalf("no api.call event for %s", action)
		}
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

// TestBatchInstancesFromTemplate: instances sent without options in one
// batch each get their submitted template's file (read once for the batch);
// an instance of a template never submitted is refused on its own.
func TestBatchInstancesFromTemplate(t *testing.T) {
	c := newCluster(t)
	_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: "tpl@.service", Options: opts("Service", "ExecStart", "/bin/sleep %i")})
	require.NoError(t, err)
	us := []*api.Unit{{Name: "tpl@1.service"}, {Name: "tpl@2.service"}, {Name: "none@1.service"}, {Name: "tpl@3.service", DesiredState: "launched"}}
	rs := c.rc.(api.UnitBatcher).CreateUnits(c.ctx, us)
	require.Len(t, rs, len(us))
	require.True(t, errors.Is(rs[2].Err, api.ErrConflict), "%v", rs[2].Err)
	require.ErrorContains(t, rs[2].Err, "template none@.service has not been submitted")
	for _, i := range []int{0, 1, 3} {
		require.NoError(t, rs[i].Err, us[i].Name)
		u, err := c.rc.Unit(c.ctx, us[i].Name)
		require.NoError(t, err)
		require.Equal(t, "/bin/sleep %i", u.Options[0].Value, us[i].Name)
	}
}
