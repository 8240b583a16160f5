package fleetctl_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/engine"
	"github.com/seed-a1ce88ea/fleet/fleetctl"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// fakeAgents plays every machine's agent: every 20 ms it publishes, for each
// placement, the state systemd would reach (active for launched, inactive
// for loaded) and deletes the states of units no longer scheduled there.
func (h *harness) fakeAgents() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(h.ctx)
	var wg sync.WaitGroup
	h.t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
			for id, agent := range h.machines {
				ps, _, err := h.reg.Schedule(ctx, id)
				if err != nil {
					continue
				}
				want := map[string]bool{}
				for _, p := range ps {
					want[p.Name] = true
					active := "inactive"
					if p.DesiredState == registry.StateLaunched {
						active = "active"
					}
					_ = agent.PublishState(ctx, registry.UnitState{Name: p.Name, Hash: p.Hash, LoadState: "loaded", ActiveState: active})
				}
				states, err := h.reg.States(ctx, id)
				if err != nil {
					continue
				}
				for _, s := range states {
					if !want[s.Name] {
						_ = agent.DeleteState(ctx, s.Name)
					}
				}
			}
		}
	})
}

func (h *harness) submit(name, text string) {
	h.t.Helper()
	f := parseUnit(h.t, text)
	require.NoError(h.t, h.reg.CreateUnit(h.ctx, registry.Unit{Name: name, Hash: f.Hash().String(), DesiredState: registry.StateLaunched}, f.String(), false))
}

// TestDrainUndrainMove runs drain, undrain and mv against a real engine
// (agents faked), with both drivers: machine ID prefixes, the plan printed,
// blocking until drained, the state column, and the refusals with their
// exit codes.
func TestDrainUndrainMove(t *testing.T) {
	for _, driver := range drivers {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver)
			h.addMachine(m1, "10.0.0.1", map[string]string{"disk": "ssd"})
			h.addMachine(m2, "10.0.0.2", nil)
			ctx, cancel := context.WithCancel(h.ctx)
			e := engine.New(engine.Config{Registry: h.reg, ID: "e1", LeaderTTL: time.Second})
			done := make(chan struct{})
			go func() { defer close(done); _ = e.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			h.fakeAgents()
			const body = "[Service]\nExecStart=/bin/sleep 1000\n"
			h.submit("a.service", body)
			h.submit("b.service", body)
			h.submit("pin.service", body+"[X-Fleet]\nMachineID="+m1+"\n")
			h.submit("ssd.service", body+"[X-Fleet]\nMachineMetadata=disk=ssd\n")
			require.Eventually(t, func() bool {
				ps, _, err := h.reg.Placements(h.ctx)
				return err == nil && len(ps) == 4
			}, 10*time.Second, 20*time.Millisecond)

			// m1 is the only machine with disk=ssd: refused, nothing written.
			r := h.run("drain", m1[:8])
			require.Equal(t, fleetctl.ExitFailed, r.code, r.stderr)
			require.ErrorContains(t, r.err, "ssd.service (no other machine has metadata disk=ssd)")
			require.ErrorContains(t, r.err, "--force")
			_, ok, err := h.reg.DrainOf(h.ctx, m1)
			require.NoError(t, err)
			require.False(t, ok)

			r = h.run("drain", "ffff")
			require.Equal(t, fleetctl.ExitNotFound, r.code, r.stderr)

			r = h.run("drain", "--force", "--deadline", "1m", m1[:8])
			require.NoError(t, r.err, r.stderr)
			require.Contains(t, r.stdout, "stays: pin.service: MachineID="+m1+" pins it to this machine")
			require.Contains(t, r.stdout, "will run nowhere: ssd.service")
			require.Regexp(t, `Machine 113f16a7 drained in [0-9.]+m?s; still there: pin.service, ssd.service\n`, r.stdout, "it waits for the agent to stop what moved")
			r = h.run("list-machines", "--no-legend", "--fields", "machine,state")
			require.NoError(t, r.err)
			require.Equal(t, "113f16a7...\tdrained\n8d5f1c2e...\tactive\n", r.stdout)
			ps, _, err := h.reg.Schedule(h.ctx, m1)
			require.NoError(t, err)
			var left []string
			for _, p := range ps {
				left = append(left, p.Name)
			}
			require.ElementsMatch(t, []string{"pin.service", "ssd.service"}, left, "what stays; ssd.service has nowhere to go and stops at the deadline")

			r = h.run("drain", m1[:8])
			require.Equal(t, fleetctl.ExitFailed, r.code)
			require.ErrorContains(t, r.err, "drained already")

			r = h.run("undrain", m1[:8])
			require.NoError(t, r.err, r.stderr)
			r = h.run("undrain", m1[:8])
			require.ErrorContains(t, r.err, "is not draining")

			// a.service moved to m2; move it back, make-before-break.
			r = h.run("mv", "a", m1[:8])
			require.NoError(t, r.err, r.stderr)
			require.True(t, strings.HasPrefix(r.stdout, "Moved a.service to "+m1), r.stdout)
			r = h.run("mv", "a.service", m1[:8])
			require.Equal(t, fleetctl.ExitFailed, r.code)
			require.ErrorContains(t, r.err, "runs on "+m1+" already")
			r = h.run("mv", "pin.service", m2[:8])
			require.ErrorContains(t, r.err, "not MachineID="+m1)
		})
	}
}
