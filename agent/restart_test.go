package agent_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestDaemonReexec: systemd re-executing itself (as a systemd package
// upgrade does) restarts no unit, and the agent goes on starting units and
// publishing their changes.
func TestDaemonReexec(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	const a, b, victim, slow, after = "steady-a.service", "steady-b.service", "victim.service", "slow-start.service", "after-reexec.service"
	ha, _ := e.schedule(a, unit("1000"), registry.StateLaunched)
	hb, _ := e.schedule(b, unit("1001"), registry.StateLaunched)
	hv, _ := e.schedule(victim, unit("1002"), registry.StateLaunched)
	for n, h := range map[string]string{a: ha, b: hb, victim: hv} {
		e.states.waitActive(n, h, "active", "running", 0)
	}
	pids := map[string]string{a: e.show(a, "MainPID"), b: e.show(b, "MainPID")}
	since := map[string]string{a: e.show(a, "ActiveEnterTimestamp"), b: e.show(b, "ActiveEnterTimestamp")}

	// A start job in flight across the re-execution.
	hs, _ := e.schedule(slow, "[Service]\nExecStartPre=/bin/sleep 1\nExecStart=/bin/sleep 1000\n", registry.StateLaunched)
	e.states.waitActive(slow, hs, "activating", "start-pre", 0)

	n := e.states.count(victim)
	start, took := e.systemctl("daemon-reexec")
	t.Logf("systemctl daemon-reexec took %v", took.Round(time.Millisecond))
	// Right after it: a new unit, and a change made behind the agent's back.
	hn, _ := e.schedule(after, unit("1003"), registry.StateLaunched)
	e.systemctl("kill", "--signal=KILL", victim)
	p := e.states.waitActive(after, hn, "active", "running", 0)
	t.Logf("daemon-reexec -> unit scheduled after it published active/running: %v", p.At.Sub(start).Round(time.Millisecond))
	p = e.states.waitActive(victim, hv, "failed", "failed", n)
	t.Logf("daemon-reexec -> a unit killed after it published failed/failed: %v", p.At.Sub(start).Round(time.Millisecond))
	e.states.waitActive(slow, hs, "active", "running", 0)

	for _, u := range []string{a, b} {
		require.Equal(t, pids[u], e.show(u, "MainPID"), "%s not restarted", u)
		require.Equal(t, since[u], e.show(u, "ActiveEnterTimestamp"))
	}
	// Over the bus the tests use, the old connection stays open; systemd's
	// name changing owner is what tells the Manager.
	require.Positive(t, e.logs.count("connected to systemd again"), "the Manager dialed systemd again")
	require.Positive(t, e.logs.count("subscription was lost and is renewed"), "the agent subscribed again and re-read its units")
}

// TestDaemonReloadStorm: units scheduled while systemd is reloaded over and
// over all start, and their states are all published.
func TestDaemonReloadStorm(t *testing.T) {
	e := newEnv(t)
	e.startAgent()
	const reloads, units = 20, 10
	var wg sync.WaitGroup
	storm := time.Now()
	var stormTook time.Duration
	wg.Go(func() {
		for range reloads {
			if _, err := e.h.Exec(t.Context(), "systemctl", "daemon-reload"); err != nil {
				t.Errorf("daemon-reload: %v", err)
				return
			}
		}
		stormTook = time.Since(storm)
	})
	hashes := map[string]string{}
	for i := range units {
		name := fmt.Sprintf("storm-%d.service", i)
		hashes[name], _ = e.schedule(name, unit(fmt.Sprint(2000+i)), registry.StateLaunched)
		time.Sleep(50 * time.Millisecond)
	}
	var last time.Time
	for name, h := range hashes {
		if p := e.states.waitActive(name, h, "active", "running", 0); p.At.After(last) {
			last = p.At
		}
	}
	wg.Wait()
	t.Logf("%d daemon-reloads took %v; the last of %d units scheduled meanwhile was published active %v after the storm began",
		reloads, stormTook.Round(time.Millisecond), units, last.Sub(storm).Round(time.Millisecond))
	// What etcd holds matches systemd, unit by unit.
	for name, h := range hashes {
		require.Equal(t, "active", e.show(name, "ActiveState"))
		require.Eventually(t, func() bool {
			states, err := e.reg.States(t.Context(), e.m.ID)
			if err != nil {
				return false
			}
			for _, s := range states {
				if s.Name == name {
					return s.Hash == h && s.ActiveState == "active" && s.SubState == "running"
				}
			}
			return false
		}, waitTimeout, 20*time.Millisecond, "state of %s", name)
	}
}
