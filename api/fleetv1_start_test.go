package api_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

const helloBody = `{"name":"hello.service","options":[` +
	`{"section":"Unit","name":"Description","value":"Hello"},` +
	`{"section":"Service","name":"ExecStart","value":"/bin/sleep 1000"}]}`

// fleetV1Check is what fleet v1.0's fleetctl start reads while it waits:
// GET /units/{name} until currentState is launched, then GET
// /state/{name}, which must then answer (its client turns a 404 into a nil
// state and dies on it). It returns the unit's currentState and the state's
// systemdActiveState ("" when the unit is not launched yet).
func fleetV1Check(t *testing.T, base string) (current, active string) {
	t.Helper()
	a := call(t, base, "GET", "/fleet/v1/units/hello.service", "")
	require.Equal(t, http.StatusOK, a.code, a.body)
	var u api.Unit
	require.NoError(t, json.Unmarshal([]byte(a.body), &u))
	if u.CurrentState != "launched" && u.CurrentState != "loaded" {
		return u.CurrentState, ""
	}
	s := call(t, base, "GET", "/fleet/v1/state/hello.service", "")
	require.Equal(t, http.StatusOK, s.code, "currentState %s but GET /state answers %s", u.CurrentState, s.body)
	var st api.UnitState
	require.NoError(t, json.Unmarshal([]byte(s.body), &st))
	require.Equal(t, u.MachineID, st.MachineID)
	return u.CurrentState, st.SystemdActiveState
}

// TestFleetV1StartSequence drives the API with the requests of CoreOS fleet
// v1.0's `fleetctl start hello.service`, with engine and agent acting
// between them, and checks that a unit said to be loaded or launched always
// has the state fleetctl reads next.
func TestFleetV1StartSequence(t *testing.T) {
	c := newCluster(t)
	const m1 = "113f16a7c2d04f5e9b1a7d3e2f4c6b8a"
	c.addMachine(machine.Machine{ID: m1, PublicIP: "10.0.0.3"})
	srv := serveTCP(t, api.NewServer(c.rc))
	base := srv.URL

	// lazyCreateUnits: GET (404), PUT the unit with its options.
	require.Equal(t, http.StatusNotFound, call(t, base, "GET", "/fleet/v1/units/hello.service", "").code)
	a := call(t, base, "PUT", "/fleet/v1/units/hello.service", helloBody)
	require.Equal(t, http.StatusCreated, a.code, a.body)
	// lazyStartUnits: GET, PUT desiredState.
	require.Equal(t, http.StatusOK, call(t, base, "GET", "/fleet/v1/units/hello.service", "").code)
	a = call(t, base, "PUT", "/fleet/v1/units/hello.service", `{"name":"hello.service","desiredState":"launched"}`)
	require.Equal(t, http.StatusNoContent, a.code, a.body)

	steps := []struct {
		name         string
		act          func()
		current      string
		activeState  string
		stateMissing bool
	}{
		{"nothing scheduled yet", func() {}, "inactive", "", true},
		{"the engine placed it, the agent has not reported", func() { c.place(m1, "hello.service", registry.StateLaunched) }, "inactive", "", true},
		{"the agent reports it starting", func() { c.publish(m1, "hello.service", "loaded", "activating", "start") }, "launched", "activating", false},
		{"the agent reports it active", func() { c.publish(m1, "hello.service", "loaded", "active", "running") }, "launched", "active", false},
	}
	for _, s := range steps {
		s.act()
		current, active := fleetV1Check(t, base)
		require.Equal(t, s.current, current, s.name)
		require.Equal(t, s.activeState, active, s.name)
		if s.stateMissing {
			require.Equal(t, http.StatusNotFound, call(t, base, "GET", "/fleet/v1/state/hello.service", "").code, s.name)
		}
	}
	// The collection says the same as the unit.
	var page api.UnitPage
	a = call(t, base, "GET", "/fleet/v1/units", "")
	require.NoError(t, json.Unmarshal([]byte(a.body), &page))
	require.Len(t, page.Units, 1)
	require.Equal(t, "launched", page.Units[0].CurrentState)
}

// TestFleetV1StartNoWindow races fleet v1.0's reads against engine and
// agent doing their work: whenever the unit says launched, its state is
// there.
func TestFleetV1StartNoWindow(t *testing.T) {
	c := newCluster(t)
	const m1 = "113f16a7c2d04f5e9b1a7d3e2f4c6b8a"
	c.addMachine(machine.Machine{ID: m1, PublicIP: "10.0.0.3"})
	srv := serveTCP(t, api.NewServer(c.rc))
	base := srv.URL
	for round := range 5 {
		a := call(t, base, "PUT", "/fleet/v1/units/hello.service", helloBody)
		require.Equal(t, http.StatusCreated, a.code, a.body)
		a = call(t, base, "PUT", "/fleet/v1/units/hello.service", `{"name":"hello.service","desiredState":"launched"}`)
		require.Equal(t, http.StatusNoContent, a.code, a.body)

		var wg sync.WaitGroup
		wg.Go(func() {
			c.place(m1, "hello.service", registry.StateLaunched)
			c.publish(m1, "hello.service", "loaded", "activating", "start")
			c.publish(m1, "hello.service", "loaded", "active", "running")
		})
		for {
			current, active := fleetV1Check(t, base)
			if current == "launched" && active == "active" {
				break
			}
		}
		wg.Wait()
		require.Equal(t, http.StatusNoContent, call(t, base, "DELETE", "/fleet/v1/units/hello.service", "").code, "round %d", round)
		require.NoError(t, c.machines[m1].DeleteState(c.ctx, "hello.service"))
		_, err := c.reg.ApplyPlan(c.ctx, c.lead, []registry.PlanOp{{Placement: registry.Placement{Machine: m1, Name: "hello.service"}}})
		require.NoError(t, err)
	}
}
