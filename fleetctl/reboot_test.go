package fleetctl_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func TestRebootCommands(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			h.addMachine(m1, "10.0.0.1", nil)
			h.addMachine(m2, "10.0.0.2", nil)

			r := h.run("reboot")
			require.Equal(t, fleetctl.ExitUsage, r.code, r.stderr)
			r = h.run("reboot", "--all", m1)
			require.Equal(t, fleetctl.ExitUsage, r.code)
			r = h.run("reboot", m1[:6], "ffff")
			require.Equal(t, fleetctl.ExitNotFound, r.code, "an unknown machine: %v", r.err)
			st, err := h.reg.RebootStatus(h.ctx)
			require.NoError(t, err)
			require.Empty(t, st.Requests, "nothing requested when one machine is unknown")

			// A machine named twice (by two prefixes) is asked once.
			r = h.run("reboot", m1[:6], m1)
			require.NoError(t, r.err)
			require.Equal(t, "Reboot of "+m1+" requested\n", r.stdout)
			r = h.run("reboot", "--all")
			require.NoError(t, r.err)
			st, err = h.reg.RebootStatus(h.ctx)
			require.NoError(t, err)
			require.Len(t, st.Requests, 2)

			now := time.Now()
			ok, err := h.reg.AcquireReboot(h.ctx, registry.RebootHolder{Machine: m2, BootID: "b1", Since: now, Deadline: now.Add(time.Minute)}, 1,
				registry.RebootStep{Machine: m2, Step: registry.RebootStepAcquired, At: now})
			require.NoError(t, err)
			require.True(t, ok)
			require.NoError(t, h.reg.SetRebootPolicy(h.ctx, registry.RebootPolicy{MaxConcurrent: 1, Window: "Mon..Fri 02:00-04:00", Timeout: 10 * time.Minute}))

			r = h.run("reboot-status")
			require.NoError(t, r.err)
			require.Contains(t, r.stdout, "Reboot policy: max 1 at once, window Mon..Fri 02:00-04:00, timeout 10m0s; 1 of 1 slots held")
			require.Regexp(t, `(?m)^8d5f1c2e\.\.\.\s+rebooting\s+\S+ ago\s+acquired\s+-`, r.stdout)
			require.Regexp(t, `(?m)^113f16a7\.\.\.\s+requested\s+`, r.stdout)

			r = h.run("reboot-status", "-o", "json")
			require.NoError(t, r.err)
			var got api.RebootStatus
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &got))
			require.Equal(t, m2, got.Holders[0].MachineID)
			require.Equal(t, 1, got.Policy.MaxConcurrent)
		})
	}
}
