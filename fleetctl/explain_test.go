package fleetctl_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestExplain runs fleetctl explain with both drivers: every machine with
// the rule that rejects the unit or, where it may run, its score.
func TestExplain(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			h.addMachine("m1aaaaaaaaaa", "10.0.0.1", map[string]string{"zone": "a"})
			h.addMachine("m2bbbbbbbbbb", "10.0.0.2", map[string]string{"zone": "b"})
			dir := t.TempDir()
			r := h.run("submit", writeUnit(t, dir, "web.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=zone not in (b)\n"))
			require.NoError(t, r.err, r.stderr)

			r = h.run("explain", "web.service")
			require.NoError(t, r.err, r.stderr)
			require.Contains(t, r.stdout, "Unit web.service, placement policy spread\n")
			require.Regexp(t, `m1aaaaaa +feasible +1\.000 +0 +- +-\n`, r.stdout)
			require.Regexp(t, `m2bbbbbb +rejected +- +0 +MachineMetadata +no metadata zone not in \(b\)\n`, r.stdout)

			r = h.run("explain", "-o", "json", "web.service")
			require.NoError(t, r.err, r.stderr)
			var e engine.Explanation
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &e))
			require.Len(t, e.Machines, 2)
			require.Equal(t, "m1aaaaaaaaaa", e.Machines[0].Machine)

			r = h.run("explain", "nope.service")
			require.Error(t, r.err)
		})
	}
}

// TestListMachinesCapacity shows what each machine offers units.
func TestListMachinesCapacity(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			p, err := h.reg.Register(h.ctx, machine.Machine{ID: "m1aaaaaaaaaa", Capacity: &machine.Capacity{CPU: 1500, Memory: 3 << 29}}, registry.MinTTL)
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Revoke(context.Background()) })
			h.addMachine("m2bbbbbbbbbb", "10.0.0.2", nil)
			r := h.run("list-machines", "--no-legend", "--fields", "machine,capacity")
			require.NoError(t, r.err, r.stderr)
			require.Regexp(t, `m1aaaaaa\.\.\.\s+1\.5 CPU, 1\.5 GiB\nm2bbbbbb\.\.\.\s+-\n`, r.stdout)
		})
	}
}
