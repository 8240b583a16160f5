package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// answer is a raw HTTP answer.
type answer struct {
	code   int
	header http.Header
	body   string
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(a.body), &m), "body: %s", a.body)
	return m
}

func call(t *testing.T, base, method, path, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

const helloJSON = `{"name":"hello.service","options":[` +
	`{"section":"Unit","name":"Description","value":"Hello"},` +
	`{"section":"Service","name":"ExecStart","value":"/bin/sleep 1000"}]}`

func TestServerJSONShapes(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc, api.WithVersion("1.2.3")))
	c.addMachine(machine.Machine{ID: "113f16a7aaaabbbbccccddddeeeeffff", PublicIP: "10.0.0.3", Metadata: map[string]string{"role": "web"}})

	a := call(t, srv.URL, "PUT", "/fleet/v1/units/hello.service", helloJSON)
	require.Equal(t, http.StatusCreated, a.code, a.body)
	require.Equal(t, "fleetd/1.2.3", a.header.Get("Server"))

	// An unscheduled unit: currentState inactive, no machineID.
	u := call(t, srv.URL, "GET", "/fleet/v1/units/hello.service", "").json(t)
	require.Equal(t, []string{"currentState", "desiredState", "name", "options"}, keys(u))
	require.Equal(t, "hello.service", u["name"])
	require.Equal(t, "inactive", u["desiredState"])
	require.Equal(t, "inactive", u["currentState"])
	o := u["options"].([]any)
	require.Len(t, o, 2)
	require.Equal(t, map[string]any{"section": "Unit", "name": "Description", "value": "Hello"}, o[0])

	// Scheduled: currentState is the placement's state, machineID its machine.
	require.NoError(t, c.rc.SetUnitTargetState(c.ctx, "hello.service", "launched"))
	c.place("113f16a7aaaabbbbccccddddeeeeffff", "hello.service", registry.StateLaunched)
	c.publish("113f16a7aaaabbbbccccddddeeeeffff", "hello.service", "loaded", "active", "running")
	u = call(t, srv.URL, "GET", "/fleet/v1/units/hello.service", "").json(t)
	require.Equal(t, []string{"currentState", "desiredState", "machineID", "name", "options"}, keys(u))
	require.Equal(t, "launched", u["currentState"])
	require.Equal(t, "113f16a7aaaabbbbccccddddeeeeffff", u["machineID"])

	page := call(t, srv.URL, "GET", "/fleet/v1/units", "").json(t)
	require.Equal(t, []string{"units"}, keys(page), "the last page has no nextPageToken")
	require.Len(t, page["units"], 1)

	states := call(t, srv.URL, "GET", "/fleet/v1/state", "").json(t)
	require.Equal(t, []string{"states"}, keys(states))
	st := states["states"].([]any)
	require.Len(t, st, 1)
	s0 := st[0].(map[string]any)
	require.Equal(t, []string{"hash", "machineID", "name", "systemdActiveState", "systemdLoadState", "systemdSubState"}, keys(s0))
	require.Equal(t, "active", s0["systemdActiveState"])
	require.Equal(t, api.FileFromOptions(helloOpts).Hash().String(), s0["hash"])

	machines := call(t, srv.URL, "GET", "/fleet/v1/machines", "").json(t)
	require.Equal(t, []string{"machines"}, keys(machines))
	m0 := machines["machines"].([]any)[0].(map[string]any)
	require.Equal(t, []string{"id", "metadata", "primaryIP", "state"}, keys(m0))
	require.Equal(t, map[string]any{"role": "web"}, m0["metadata"])
	require.Equal(t, "10.0.0.3", m0["primaryIP"])

	e := call(t, srv.URL, "GET", "/fleet/v1/units/nope.service", "")
	require.Equal(t, http.StatusNotFound, e.code)
	require.Equal(t, "application/json", e.header.Get("Content-Type"))
	ej := e.json(t)
	require.Equal(t, []string{"error"}, keys(ej))
	require.Equal(t, map[string]any{"code": float64(404), "message": "unit nope.service not found"}, ej["error"])

	// Empty collections are empty arrays, not null.
	c2 := newCluster(t)
	srv2 := serveTCP(t, api.NewServer(c2.rc))
	require.JSONEq(t, `{"units":[]}`, call(t, srv2.URL, "GET", "/fleet/v1/units", "").body)
	require.JSONEq(t, `{"states":[]}`, call(t, srv2.URL, "GET", "/fleet/v1/state", "").body)
	require.JSONEq(t, `{"machines":[]}`, call(t, srv2.URL, "GET", "/fleet/v1/machines", "").body)
	require.Equal(t, "fleetd/dev", call(t, srv2.URL, "GET", "/fleet/v1/units", "").header.Get("Server"))
}

func TestServerStatusCodes(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: "hello.service", Options: helloOpts})
	require.NoError(t, err)
	_, err = c.rc.CreateUnit(c.ctx, &api.Unit{Name: "app@.service", Options: helloOpts})
	require.NoError(t, err)

	const other = `{"options":[{"section":"Service","name":"ExecStart","value":"/bin/other"}]}`
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		header  []string
		code    int
		message string // substring of the error message
	}{
		{name: "unknown unit", method: "GET", path: "/fleet/v1/units/nope.service", code: 404, message: "unit nope.service not found"},
		{name: "unknown resource", method: "GET", path: "/fleet/v1/nope", code: 404, message: "no such API resource"},
		{name: "PATCH on collection", method: "PATCH", path: "/fleet/v1/units", body: "{}", code: 405, message: "use DELETE, GET, POST"},
		{name: "empty batch", method: "POST", path: "/fleet/v1/units", body: "{}", code: 400, message: "the batch is empty"},
		{name: "PATCH on unit", method: "PATCH", path: "/fleet/v1/units/hello.service", body: "{}", code: 405, message: "use DELETE, GET, PUT"},
		{name: "DELETE machines", method: "DELETE", path: "/fleet/v1/machines", code: 405},
		{name: "POST state", method: "POST", path: "/fleet/v1/state", body: "{}", code: 405},
		{name: "PUT status", method: "PUT", path: "/fleet/v1/units/hello.service/status", body: "{}", code: 405},
		{name: "bad page token", method: "GET", path: "/fleet/v1/units?nextPageToken=garbage", code: 400, message: "invalid nextPageToken"},
		{name: "page token of wrong size", method: "GET", path: "/fleet/v1/units?nextPageToken=CgABAA==", code: 400, message: "page size must be 100"},
		{name: "page token of size zero", method: "GET", path: "/fleet/v1/units?nextPageToken=AAABAA==", code: 400, message: "page size must be greater than zero"},
		{name: "page token of another pageSize", method: "GET", path: "/fleet/v1/units?pageSize=100&nextPageToken=CgABAA==", code: 400, message: "page size must be 100"},
		{name: "pageSize out of range", method: "GET", path: "/fleet/v1/units?pageSize=0", code: 400, message: "invalid pageSize"},
		{name: "pageSize not a number", method: "GET", path: "/fleet/v1/units?pageSize=all", code: 400, message: "invalid pageSize"},
		{name: "two page tokens", method: "GET", path: "/fleet/v1/units?nextPageToken=ZAABAA==&nextPageToken=ZAABAA==", code: 400},
		{name: "PUT without JSON content type", method: "PUT", path: "/fleet/v1/units/x.service", body: helloJSON, header: []string{"Content-Type", "text/plain"}, code: 415, message: "application/json"},
		{name: "PUT without content type", method: "PUT", path: "/fleet/v1/units/x.service", body: helloJSON, header: []string{"Content-Type", ""}, code: 415},
		{name: "PUT JSON with charset", method: "PUT", path: "/fleet/v1/units/x.service", body: other, header: []string{"Content-Type", "application/json; charset=utf-8"}, code: 201},
		{name: "PUT broken JSON", method: "PUT", path: "/fleet/v1/units/y.service", body: "{", code: 400, message: "decode request body"},
		{name: "PUT name mismatch", method: "PUT", path: "/fleet/v1/units/y.service", body: helloJSON, code: 400, message: "differs"},
		{name: "PUT invalid name", method: "PUT", path: "/fleet/v1/units/bad%20name.service", body: other, code: 400, message: "invalid unit name"},
		{name: "PUT unknown type", method: "PUT", path: "/fleet/v1/units/y.foo", body: other, code: 400, message: `unknown unit type "foo"`},
		{name: "PUT no options", method: "PUT", path: "/fleet/v1/units/y.service", body: `{}`, code: 409, message: "has no options"},
		{name: "PUT broken fleet options", method: "PUT", path: "/fleet/v1/units/y.service", body: `{"options":[` +
			`{"section":"X-Fleet","name":"MachineID","value":"abc"},{"section":"X-Fleet","name":"Global","value":"true"}]}`,
			code: 400, message: "MachineID cannot be combined with Global"},
		{name: "PUT bad desired state", method: "PUT", path: "/fleet/v1/units/y.service", body: `{"desiredState":"running","options":[{"section":"Service","name":"ExecStart","value":"/bin/x"}]}`, code: 400, message: "invalid target state"},
		{name: "PUT existing without state", method: "PUT", path: "/fleet/v1/units/hello.service", body: helloJSON, code: 409, message: "give a desiredState"},
		{name: "PUT existing with other options", method: "PUT", path: "/fleet/v1/units/hello.service", body: other, code: 409, message: "different unit file"},
		{name: "PUT create-only on existing", method: "PUT", path: "/fleet/v1/units/hello.service", body: helloJSON, header: []string{"If-None-Match", "*"}, code: 412, message: "already exists"},
		{name: "PUT update-only on missing", method: "PUT", path: "/fleet/v1/units/z.service", body: `{"desiredState":"loaded"}`, header: []string{"If-Match", "*"}, code: 404},
		{name: "PUT state of existing", method: "PUT", path: "/fleet/v1/units/hello.service", body: `{"desiredState":"loaded"}`, code: 204},
		{name: "PUT state with same options", method: "PUT", path: "/fleet/v1/units/hello.service", body: strings.Replace(helloJSON, `{"name"`, `{"desiredState":"launched","name"`, 1), code: 204},
		{name: "PUT bad replace flag", method: "PUT", path: "/fleet/v1/units/hello.service?replace=maybe", body: other, code: 400},
		{name: "PUT replace", method: "PUT", path: "/fleet/v1/units/hello.service?replace=true", body: other, code: 204},
		{name: "launch a template", method: "PUT", path: "/fleet/v1/units/app@.service", body: `{"desiredState":"launched"}`, code: 400,
			message: "unit app@.service is a template; start an instance such as app@1.service"},
		{name: "instance from template", method: "PUT", path: "/fleet/v1/units/app@1.service", body: `{"desiredState":"launched"}`, code: 201},
		{name: "instance without template", method: "PUT", path: "/fleet/v1/units/db@1.service", body: `{}`, code: 409, message: "template db@.service has not been submitted"},
		{name: "status of unscheduled unit", method: "GET", path: "/fleet/v1/units/app@.service/status", code: 409, message: "not scheduled to any machine"},
		{name: "status of unknown unit", method: "GET", path: "/fleet/v1/units/nope.service/status", code: 404},
		{name: "journal bad lines", method: "GET", path: "/fleet/v1/units/hello.service/journal?lines=abc", code: 400, message: "lines must be a number"},
		{name: "journal negative lines", method: "GET", path: "/fleet/v1/units/hello.service/journal?lines=-1", code: 400},
		{name: "journal bad follow", method: "GET", path: "/fleet/v1/units/hello.service/journal?follow=sometimes", code: 400, message: "follow must be true or false"},
		{name: "journal bad output", method: "GET", path: "/fleet/v1/units/hello.service/journal?output=--all", code: 400, message: "invalid journal output mode"},
		{name: "journal of unscheduled unit", method: "GET", path: "/fleet/v1/units/hello.service/journal?lines=0&follow=true", code: 409, message: "not scheduled to any machine"},
		{name: "machines bad page token", method: "GET", path: "/fleet/v1/machines?nextPageToken=EwBMLg==", code: 400, message: "invalid nextPageToken"},
		{name: "state bad page token", method: "GET", path: "/fleet/v1/state?nextPageToken=x", code: 400, message: "invalid nextPageToken"},
		{name: "POST discovery", method: "POST", path: "/fleet/v1/discovery", body: "{}", code: 405},
		{name: "PATCH bad op", method: "PATCH", path: "/fleet/v1/machines", body: `[{"op":"noop","path":"/m1/metadata/foo","value":"bar"}]`, code: 400, message: `invalid op "noop"`},
		{name: "PATCH bad path", method: "PATCH", path: "/fleet/v1/machines", body: `[{"op":"add","path":"/m1/foo","value":"bar"}]`, code: 400, message: "invalid machine metadata path"},
		{name: "PATCH bad key", method: "PATCH", path: "/fleet/v1/machines", body: `[{"op":"add","path":"/m1/metadata/a b","value":"bar"}]`, code: 400, message: "invalid machine metadata path"},
		{name: "PATCH missing value", method: "PATCH", path: "/fleet/v1/machines", body: `[{"op":"replace","path":"/m1/metadata/foo"}]`, code: 400, message: "requires a non-empty value"},
		{name: "PATCH not a list", method: "PATCH", path: "/fleet/v1/machines", body: `{"op":"add"}`, code: 400, message: "decode request body"},
		{name: "PATCH any content type", method: "PATCH", path: "/fleet/v1/machines", body: `[]`, header: []string{"Content-Type", "application/x-www-form-urlencoded"}, code: 204},
		{name: "PATCH valid", method: "PATCH", path: "/fleet/v1/machines", body: `[{"op":"add","path":"/m1/metadata/foo","value":"bar"}]`, code: 204},
		{name: "PATCH without content type", method: "PATCH", path: "/fleet/v1/machines", body: `[{"op":"remove","path":"/m1/metadata/foo"}]`, header: []string{"Content-Type", ""}, code: 204},
		{name: "DELETE", method: "DELETE", path: "/fleet/v1/units/x.service", code: 204},
		{name: "DELETE again", method: "DELETE", path: "/fleet/v1/units/x.service", code: 404, message: "unit x.service not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, srv.URL, tt.method, tt.path, tt.body, tt.header...)
			require.Equal(t, tt.code, a.code, "body: %s", a.body)
			if tt.code >= 400 {
				e := a.json(t)["error"].(map[string]any)
				require.Equal(t, float64(tt.code), e["code"])
				require.Contains(t, e["message"], tt.message)
			} else {
				require.Empty(t, a.body)
			}
			if tt.code == 405 {
				require.NotEmpty(t, a.header.Get("Allow"))
			}
		})
	}

	u, err := c.rc.Unit(c.ctx, "hello.service")
	require.NoError(t, err)
	require.Equal(t, "launched", u.DesiredState, "replace keeps the desired state")
	require.Equal(t, "/bin/other", u.Options[0].Value)
	inst, err := c.rc.Unit(c.ctx, "app@1.service")
	require.NoError(t, err)
	require.Equal(t, helloOpts, inst.Options, "an instance takes its template's options")
	require.Equal(t, "launched", inst.DesiredState)
}

func TestServerPagination(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	for i := range 150 {
		_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: fmt.Sprintf("u%03d.service", i), Options: helloOpts})
		require.NoError(t, err)
	}
	p1 := call(t, srv.URL, "GET", "/fleet/v1/units", "").json(t)
	require.Len(t, p1["units"], 100)
	tok := p1["nextPageToken"].(string)
	require.NotEmpty(t, tok)
	p2 := call(t, srv.URL, "GET", "/fleet/v1/units?nextPageToken="+tok, "").json(t)
	require.Len(t, p2["units"], 50)
	require.NotContains(t, p2, "nextPageToken", "fleet omits the token on the last page")
	require.Equal(t, "u100.service", p2["units"].([]any)[0].(map[string]any)["name"])

	// The HTTP client follows the pages.
	hc, err := api.NewHTTPClient(srv.URL, 0)
	require.NoError(t, err)
	all, err := hc.Units(c.ctx)
	require.NoError(t, err)
	require.Len(t, all, 150)
	require.Equal(t, "u149.service", all[149].Name)

	// Past the end: an empty page.
	p3 := call(t, srv.URL, "GET", "/fleet/v1/units?nextPageToken=ZAADAA==", "").json(t)
	require.Equal(t, []any{}, p3["units"])
}

func TestServerStateFilters(t *testing.T) {
	c := newCluster(t)
	srv := serveTCP(t, api.NewServer(c.rc))
	c.addMachine(machine.Machine{ID: "m1", PublicIP: "10.0.0.1"})
	c.addMachine(machine.Machine{ID: "m2", PublicIP: "10.0.0.2"})
	for _, n := range []string{"a.service", "b.service"} {
		_, err := c.rc.CreateUnit(c.ctx, &api.Unit{Name: n, Options: helloOpts})
		require.NoError(t, err)
	}
	c.publish("m2", "b.service", "loaded", "active", "running")
	c.publish("m1", "b.service", "loaded", "inactive", "dead")
	c.publish("m1", "a.service", "loaded", "failed", "failed")

	names := func(q string) []string {
		var page api.UnitStatePage
		require.NoError(t, json.Unmarshal([]byte(call(t, srv.URL, "GET", "/fleet/v1/state"+q, "").body), &page))
		var out []string
		for _, s := range page.States {
			out = append(out, s.Name+"@"+s.MachineID)
		}
		return out
	}
	require.Equal(t, []string{"a.service@m1", "b.service@m1", "b.service@m2"}, names(""))
	require.Equal(t, []string{"a.service@m1", "b.service@m1"}, names("?machineID=m1"))
	require.Equal(t, []string{"b.service@m1", "b.service@m2"}, names("?unitName=b.service"))
	require.Equal(t, []string{"b.service@m2"}, names("?unitName=b.service&machineID=m2"))
	require.Empty(t, names("?machineID=m3"))
}
