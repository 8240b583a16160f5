package fleetctl_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestRefusedUnit: a unit the machine's agent refuses (the host has a unit
// of that name) shows why in list-units, status and journal, which do not
// show the host's unit of that name (the machine's fleetd answers with
// api.RefusingInspector).
func TestRefusedUnit(t *testing.T) {
	h := newHarness(t, "api")
	h.socket = serveUnix(t, api.NewServer(api.NewRegistryClient(h.reg),
		api.WithLocalMachine(m1, api.RefusingInspector(fakeInspector{}, api.NewRegistryClient(h.reg), m1))))
	h.addMachine(m1, "10.0.0.3", nil)
	dir := t.TempDir()
	require.NoError(t, h.run("submit", writeUnit(t, dir, "ssh.service", helloUnit)).err)
	h.place(m1, "ssh.service", registry.StateLaunched)
	u, err := h.reg.Unit(h.ctx, "ssh.service")
	require.NoError(t, err)
	const reason = "refused: this machine has a unit of its own named ssh.service (/lib/systemd/system/ssh.service); fleet does not override it"
	require.NoError(t, h.machines[m1].PublishState(h.ctx, registry.UnitState{
		Name: "ssh.service", Hash: u.Hash, LoadState: "error", ActiveState: "failed", SubState: "refused", Reason: reason,
	}))

	r := h.run("list-units", "--no-legend", "--fields=unit,active,sub,reason")
	require.NoError(t, r.err)
	require.Equal(t, "ssh.service\tfailed\trefused\t"+reason+"\n", r.stdout)

	r = h.run("status", "ssh")
	require.NoError(t, r.err)
	require.Equal(t, "ssh.service on machine "+m1+": "+reason+"\n", r.stdout, "the host's ssh.service is not shown")

	r = h.run("journal", "ssh")
	require.Error(t, r.err)
	require.ErrorContains(t, r.err, reason)

	r = h.run("status", "-o", "json", "ssh")
	require.NoError(t, r.err)
	var out []struct {
		Status string
		States []api.UnitState
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	require.Len(t, out, 1)
	require.Contains(t, out[0].Status, reason)
	require.Len(t, out[0].States, 1)
	require.Equal(t, reason, out[0].States[0].Reason)
}
