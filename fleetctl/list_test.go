package fleetctl_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// setupListCluster builds a cluster to list: two machines; hello launched
// and running on m1, db loaded on m2, idle only submitted, a global unit.
func setupListCluster(t *testing.T, driver string) *harness {
	h := newHarness(t, driver)
	h.addMachine(m1, "10.0.0.3", map[string]string{"role": "web", "disk": "ssd"})
	h.addMachine(m2, "10.0.0.4", nil)
	rc := api.NewRegistryClient(h.reg)
	for _, u := range []struct{ name, text, state string }{
		{"hello.service", "[Unit]\nDescription=Hello World\n\n[Service]\nExecStart=/bin/sleep 1000\n", "launched"},
		{"db.service", "[Service]\nExecStart=/usr/bin/db\n", "loaded"},
		{"idle.service", "[Service]\nExecStart=/bin/true\n", "inactive"},
		{"everywhere.service", "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n", "launched"},
	} {
		f := parseUnit(t, u.text)
		_, err := rc.CreateUnit(h.ctx, &api.Unit{Name: u.name, Options: api.OptionsFromFile(f), DesiredState: u.state})
		require.NoError(t, err)
	}
	h.place(m1, "hello.service", registry.StateLaunched)
	h.publish(m1, "hello.service", "loaded", "active", "running")
	h.place(m2, "db.service", registry.StateLoaded)
	h.publish(m2, "db.service", "loaded", "inactive", "dead")
	h.place(m1, "everywhere.service", registry.StateLaunched)
	h.place(m2, "everywhere.service", registry.StateLaunched)
	h.publish(m1, "everywhere.service", "loaded", "active", "exited")
	h.publish(m2, "everywhere.service", "loaded", "active", "exited")
	return h
}

func TestListCommands(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := setupListCluster(t, driver)
			for _, tt := range []struct {
				name string
				args []string
				want string
			}{
				{"list-machines", []string{"list-machines"}, "" +
					"MACHINE\t\tIP\t\tMETADATA\n" +
					"113f16a7...\t10.0.0.3\tdisk=ssd,role=web\n" +
					"8d5f1c2e...\t10.0.0.4\t-\n"},
				{"list-machines full no legend", []string{"list-machines", "--full", "--no-legend"}, "" +
					m1 + "\t10.0.0.3\tdisk=ssd,role=web\n" +
					m2 + "\t10.0.0.4\t-\n"},
				{"list-units", []string{"list-units"}, "" +
					"UNIT\t\t\tMACHINE\t\t\tACTIVE\t\tSUB\n" +
					"db.service\t\t8d5f1c2e.../10.0.0.4\tinactive\tdead\n" +
					"everywhere.service\t113f16a7.../10.0.0.3\tactive\t\texited\n" +
					"everywhere.service\t8d5f1c2e.../10.0.0.4\tactive\t\texited\n" +
					"hello.service\t\t113f16a7.../10.0.0.3\tactive\t\trunning\n"},
				{"list-units fields", []string{"list-units", "--fields", "unit,load,hash", "--no-legend"}, "" +
					"db.service\t\tloaded\t" + hashOf(t, h, "db.service")[:7] + "\n" +
					"everywhere.service\tloaded\t" + hashOf(t, h, "everywhere.service")[:7] + "\n" +
					"everywhere.service\tloaded\t" + hashOf(t, h, "everywhere.service")[:7] + "\n" +
					"hello.service\t\tloaded\t" + hashOf(t, h, "hello.service")[:7] + "\n"},
				{"list-unit-files", []string{"list-unit-files"}, "" +
					"UNIT\t\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n" +
					"db.service\t\t" + hashOf(t, h, "db.service")[:7] + "\tloaded\t\tloaded\t\t8d5f1c2e.../10.0.0.4\n" +
					"everywhere.service\t" + hashOf(t, h, "everywhere.service")[:7] + "\tlaunched\t-\t\tglobal\n" +
					"hello.service\t\t" + hashOf(t, h, "hello.service")[:7] + "\tlaunched\tlaunched\t113f16a7.../10.0.0.3\n" +
					"idle.service\t\t" + hashOf(t, h, "idle.service")[:7] + "\tinactive\tinactive\t-\n"},
				{"list-unit-files full", []string{"list-unit-files", "-l", "--fields=unit,hash,target,desc,global", "--no-legend"}, "" +
					"db.service\t\t" + hashOf(t, h, "db.service") + "\t" + m2 + "/10.0.0.4\t-\t\tfalse\n" +
					"everywhere.service\t" + hashOf(t, h, "everywhere.service") + "\tglobal\t\t\t\t\t\t-\t\ttrue\n" +
					"hello.service\t\t" + hashOf(t, h, "hello.service") + "\t" + m1 + "/10.0.0.3\tHello World\tfalse\n" +
					"idle.service\t\t" + hashOf(t, h, "idle.service") + "\t-\t\t\t\t\t\t-\t\tfalse\n"},
			} {
				t.Run(tt.name, func(t *testing.T) {
					r := h.run(tt.args...)
					require.NoError(t, r.err)
					require.Equal(t, tt.want, r.stdout)
					require.Empty(t, r.stderr)
				})
			}
		})
	}
}

func TestListJSON(t *testing.T) {
	h := setupListCluster(t, "api")
	r := h.run("list-units", "-o", "json")
	require.NoError(t, r.err)
	var states []api.UnitState
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &states))
	require.Len(t, states, 4)
	require.Equal(t, api.UnitState{Name: "db.service", Hash: hashOf(t, h, "db.service"), MachineID: m2,
		SystemdLoadState: "loaded", SystemdActiveState: "inactive", SystemdSubState: "dead"}, states[0])

	r = h.run("list-unit-files", "--output=json")
	require.NoError(t, r.err)
	var units []api.Unit
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &units))
	require.Len(t, units, 4)
	require.Equal(t, "hello.service", units[2].Name)
	require.Equal(t, m1, units[2].MachineID)

	r = h.run("list-machines", "-o", "json")
	require.NoError(t, r.err)
	var ms []api.Machine
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &ms))
	require.Equal(t, []api.Machine{
		{ID: m1, PrimaryIP: "10.0.0.3", Metadata: map[string]string{"disk": "ssd", "role": "web"}, State: "active"},
		{ID: m2, PrimaryIP: "10.0.0.4", Metadata: map[string]string{}, State: "active"},
	}, ms)

	// An empty cluster lists an empty array, and a legend only.
	e := newHarness(t, "etcd")
	r = e.run("list-units", "-o", "json")
	require.NoError(t, r.err)
	require.Equal(t, "[]\n", r.stdout)
	r = e.run("list-units")
	require.NoError(t, r.err)
	require.Equal(t, "UNIT\tMACHINE\tACTIVE\tSUB\n", r.stdout)
}

func TestListBadFlags(t *testing.T) {
	h := newHarness(t, "api")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"list-units", "--fields", "unit,bogus"}, `list-units: invalid field "bogus" in --fields; valid fields are active,hash,load,machine,reason,sub,unit`},
		{[]string{"list-unit-files", "--fields", ""}, "list-unit-files: --fields must name at least one column; valid fields are desc,dstate,global,hash,reason,state,target,unit"},
		{[]string{"list-machines", "--fields", "machine,"}, `list-machines: invalid field "" in --fields`},
		{[]string{"list-machines", "-o", "yaml"}, `invalid argument "yaml" for "-o, --output" flag: "yaml" is not one of table, json`},
		{[]string{"list-machines", "extra"}, "list-machines: unknown command \"extra\" for \"fleetctl list-machines\""},
	} {
		r := h.run(tt.args...)
		require.Equal(t, 2, r.code, "%v: %v", tt.args, r.err)
		require.ErrorContains(t, r.err, tt.want)
		require.Empty(t, r.stdout)
	}
}
