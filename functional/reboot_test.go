package functional

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// rebootConf is the reboot group's fleetd configuration: one slot; a drain
// waits at most 3 s (on a branch without the engine's drain work the drain
// is never done, and the reboot goes at this deadline, as the contract
// says); a machine has a minute to come back.
var rebootConf = map[string]string{
	"reboot_max_concurrent": "1",
	"reboot_drain_deadline": "3s",
	"reboot_timeout":        "60s",
}

// rebootService is the 2-instance service: each instance conflicts with the
// other, so they never share a machine.
const rebootService = "[Unit]\nDescription=two copies, never on one machine\n[Service]\nExecStart=/bin/sleep infinity\n[X-Fleet]\nConflicts=rb@*.service\n"

// TestReboot: coordinated reboots on three hosts. All three are flagged at
// once (the sentinel file, as unattended-upgrades writes it) with one slot;
// a probe asks every host's systemd every 100 ms what runs. The service
// never has both copies down, at most one host is down at any sample, every
// host boots again (new boot ID) and the slot is free at the end. Then a
// host asked to reboot with fleetctl reboot never comes back (its
// reboot_command powers it off): another machine releases its slot after
// reboot_timeout.
func TestReboot(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, conf: rebootConf})
	ctx := e.ctx

	t.Run("three hosts flagged at once reboot one at a time; the service never loses both copies", func(t *testing.T) {
		e.scenario(t)
		hs := e.running()
		require.Len(t, hs, 3)
		obs := hs[0]
		writeUnit(t, obs, "rb@.service", rebootService)
		e.fleetctl(t, obs, "submit", unit("rb@.service"))
		e.fleetctl(t, obs, "start", "rb@1.service", "rb@2.service")
		_, err := e.API(obs).WaitCount(ctx, 30*time.Second, 2)
		require.NoError(t, err)

		bootIDs := map[*hosts.Host]string{}
		boots := map[*hosts.Host]int{}
		for _, h := range hs {
			bootIDs[h] = e.sh(t, h, "cat", "/proc/sys/kernel/random/boot_id")
			boots[h] = h.Boots()
		}
		p := newRebootProbe(hs, "rb@*", []string{"rb@1.service", "rb@2.service"})
		pctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { p.run(pctx) })
		defer func() { stop(); wg.Wait() }()
		for !p.sampled() {
			time.Sleep(10 * time.Millisecond)
		}

		start := time.Now()
		for _, h := range hs {
			e.sh(t, h, "touch", "/run/reboot-required")
		}
		var st api.RebootStatus
		err = waitFor(ctx, 5*time.Minute, func() bool {
			st = e.rebootStatus(t)
			done := 0
			for _, h := range hs {
				if h.Boots() > boots[h] && lastOutcome(st, h.MachineID) == "back" {
					done++
				}
			}
			return done == len(hs) && len(st.Holders) == 0
		})
		require.NoError(t, err, "every host rebooted and back, the slot free; last status %+v", st)
		total := time.Since(start)
		stop()
		wg.Wait()

		for _, h := range hs {
			require.Equal(t, boots[h]+1, h.Boots(), "%s booted once more", h.Name)
			require.NotEqual(t, bootIDs[h], e.sh(t, h, "cat", "/proc/sys/kernel/random/boot_id"), "%s has a new boot ID", h.Name)
			_, err := h.Exec(ctx, "test", "-e", "/run/reboot-required")
			require.Error(t, err, "the reboot cleared %s's sentinel", h.Name)
		}
		require.Empty(t, st.Holders, "the slot is free")
		require.Empty(t, st.Queue)
		r := p.result()
		t.Logf("probe: %d samples; most hosts down at once %d; longest gap with no copy %s; per copy %v", r.samples, r.mostDown, r.serviceGap, r.gaps)
		require.LessOrEqual(t, r.mostDown, 1, "at most one host rebooting at any sample")
		require.Zero(t, r.bothDown, "never both copies down (samples with none active)")
		figure(t, "rolling reboot of 3 hosts: total", total, fmt.Sprintf("flag -> last host back and slot free; reboot_max_concurrent=1, reboot_drain_deadline=%s", rebootConf["reboot_drain_deadline"]))
		figure(t, "rolling reboot: longest gap of the 2-copy service", r.serviceGap, fmt.Sprintf("no copy active on any host; %d samples every 100 ms", r.samples))
		for name, g := range r.gaps {
			figure(t, "rolling reboot: longest gap of "+name, g, "this copy active nowhere")
		}
		out := e.fleetctl(t, obs, "reboot-status")
		t.Logf("fleetctl reboot-status:\n%s", out)
	})

	t.Run("a host that never comes back loses its slot after reboot_timeout", func(t *testing.T) {
		e.scenario(t)
		hs := e.running()
		victim, obs := hs[len(hs)-1], hs[0]
		conf := e.FleetConf(victim)
		maps.Copy(conf, e.conf)
		// The machine powers off instead of rebooting: it never registers again.
		conf["reboot_command"] = "systemctl poweroff"
		conf["reboot_timeout"] = "10s"
		require.NoError(t, e.WriteFleetConf(victim, conf))
		require.NoError(t, e.RestartFleet(ctx, victim))
		require.NoError(t, e.WaitMachinesOn(ctx, obs, len(hs), 30*time.Second))

		start := time.Now()
		e.fleetctl(t, obs, "reboot", victim.MachineID)
		var st api.RebootStatus
		err := waitFor(ctx, 2*time.Minute, func() bool {
			st = e.rebootStatus(t)
			return victim.Leader() == 0 && len(st.Holders) == 0 && lastOutcome(st, victim.MachineID) == "timeout"
		})
		require.NoError(t, err, "last status %+v", st)
		released := time.Since(start)
		require.Empty(t, st.Requests, "the request goes with the slot")
		var step api.RebootMachine
		for _, m := range st.Machines {
			if m.MachineID == victim.MachineID {
				step = m
			}
		}
		require.Equal(t, "timeout", step.Step)
		require.Contains(t, step.Detail, "released by")
		figure(t, "reboot request -> slot of a lost host released", released, "reboot_timeout=10s, reboot_drain_deadline=3s")
	})
}

// rebootStatus runs fleetctl reboot-status -o json on a running host.
func (e *env) rebootStatus(t *testing.T) api.RebootStatus {
	t.Helper()
	var st api.RebootStatus
	out, err := e.Fleetctl(e.ctx, e.observer(t), "reboot-status", "-o", "json")
	if err != nil {
		return st // a host going down under fleetctl: ask again
	}
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st
}

func lastOutcome(st api.RebootStatus, id string) string {
	for _, m := range st.Machines {
		if m.MachineID == id {
			return m.LastOutcome
		}
	}
	return ""
}

// waitFor polls cond every 200 ms until it holds or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// rebootProbe asks every host's systemd (the chaos run's systemdUnits)
// every samplePeriod which units of a pattern run, and keeps how many hosts
// were down at once and how long each unit, and the service as a whole,
// ran nowhere. A host that is down, or whose systemd does not answer (it
// is shutting down or booting), runs nothing.
type rebootProbe struct {
	hosts   []*hosts.Host
	pattern string
	names   []string

	mu       sync.Mutex
	samples  int
	mostDown int
	bothDown int                  // samples with no unit of names active anywhere
	since    map[string]time.Time // unit -> first sample it was active nowhere
	gaps     map[string]time.Duration
	allSince time.Time
	allGap   time.Duration
}

type rebootProbeResult struct {
	samples, mostDown, bothDown int
	gaps                        map[string]time.Duration
	serviceGap                  time.Duration
}

func newRebootProbe(hs []*hosts.Host, pattern string, names []string) *rebootProbe {
	return &rebootProbe{hosts: hs, pattern: pattern, names: names, since: map[string]time.Time{}, gaps: map[string]time.Duration{}}
}

func (p *rebootProbe) run(ctx context.Context) {
	tick := time.NewTicker(samplePeriod)
	defer tick.Stop()
	for {
		p.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *rebootProbe) sample(ctx context.Context) {
	down := make([]bool, len(p.hosts))
	got := make([]map[string]unitRun, len(p.hosts))
	var wg sync.WaitGroup
	for i, h := range p.hosts {
		wg.Go(func() {
			boot := h.Leader()
			if boot == 0 {
				down[i] = true
				return
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			units, err := systemdUnits(sctx, h, p.pattern)
			if err != nil || h.Leader() != boot {
				down[i] = true
				return
			}
			got[i] = units
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.samples++
	n := 0
	for _, d := range down {
		if d {
			n++
		}
	}
	p.mostDown = max(p.mostDown, n)
	anyActive := false
	for _, name := range p.names {
		active := false
		for _, units := range got {
			if units[name].running() {
				active = true
			}
		}
		anyActive = anyActive || active
		if s, ok := p.since[name]; ok && active {
			p.gaps[name] = max(p.gaps[name], now.Sub(s))
			delete(p.since, name)
		} else if !ok && !active {
			p.since[name] = now
		}
	}
	switch {
	case !anyActive:
		p.bothDown++
		if p.allSince.IsZero() {
			p.allSince = now
		}
	case !p.allSince.IsZero():
		p.allGap = max(p.allGap, now.Sub(p.allSince))
		p.allSince = time.Time{}
	}
}

func (p *rebootProbe) sampled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.samples > 0
}

func (p *rebootProbe) result() rebootProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	gaps := maps.Clone(p.gaps)
	for name, s := range p.since {
		gaps[name] = max(gaps[name], now.Sub(s))
	}
	for _, name := range p.names {
		if _, ok := gaps[name]; !ok {
			gaps[name] = 0
		}
	}
	return rebootProbeResult{samples: p.samples, mostDown: p.mostDown, bothDown: p.bothDown, gaps: gaps, serviceGap: p.allGap}
}
