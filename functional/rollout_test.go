package functional

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// webUnit is a web@ template whose copies write their version where a
// health check can see it (in ExecStartPre, so an active copy has written
// it); extra lines go into [X-Fleet].
func webUnit(version string, xfleet ...string) string {
	return fmt.Sprintf(`[Unit]
Description=web %%i %s
[Service]
ExecStartPre=/bin/sh -c 'echo %s > /run/web-%%i.version'
ExecStart=/bin/sleep infinity
[X-Fleet]
Conflicts=web@*
UpdateMinHealthy=2s
%s
`, version, version, strings.Join(xfleet, "\n"))
}

// activeProbe counts, every 100 ms, the web@ copies active on every host,
// through the chaos run's systemd sampler (systemdUnits): fleet is not
// asked. A sample in which some host did not answer is skipped.
type activeProbe struct {
	mu      sync.Mutex
	min     int
	samples int
	stop    func()
	done    chan struct{}
}

func (e *env) startProbe(t *testing.T) *activeProbe {
	ctx, cancel := context.WithCancel(e.ctx)
	p := &activeProbe{min: -1, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			hs := e.running()
			counts := make([]int, len(hs))
			ok := make([]bool, len(hs))
			var wg sync.WaitGroup
			for i, h := range hs {
				wg.Go(func() {
					sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					defer cancel()
					units, err := systemdUnits(sctx, h, "web@*")
					if err != nil {
						return
					}
					for _, u := range units {
						if u.active == "active" {
							counts[i]++
						}
					}
					ok[i] = true
				})
			}
			wg.Wait()
			if ctx.Err() != nil {
				return
			}
			total, known := 0, true
			for i := range hs {
				total += counts[i]
				known = known && ok[i]
			}
			if known {
				p.mu.Lock()
				if p.min < 0 || total < p.min {
					p.min = total
					if total < 2 {
						t.Logf("probe: only %d web copies active", total)
					}
				}
				p.samples++
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// end stops the probe and returns the fewest copies seen active.
func (p *activeProbe) end() (minActive, samples int) {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.min, p.samples
}

// rolloutStatus is fleetctl rollout status -o json, in the fields read here.
type rolloutStatus struct {
	ID      string
	Phase   string
	Message string
	Healthy int
	Total   int
	Steps   []struct {
		Unit, State, Reason string
		Since               time.Time
	}
	Started, Ended, Reverting time.Time
}

func (e *env) rolloutStatus(t *testing.T, h *hosts.Host, target string) rolloutStatus {
	t.Helper()
	var st rolloutStatus
	require.NoError(t, json.Unmarshal([]byte(e.fleetctl(t, h, "rollout", "status", target, "-o", "json")), &st))
	return st
}

// versions returns the version each host's web copy wrote, by instance.
func (e *env) versions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range e.running() {
		units, err := systemdUnits(e.ctx, h, "web@*")
		require.NoError(t, err)
		for name, u := range units {
			if u.active != "active" {
				continue
			}
			inst := strings.TrimSuffix(strings.TrimPrefix(name, "web@"), ".service")
			b, err := h.Exec(e.ctx, "cat", "/run/web-"+inst+".version")
			require.NoError(t, err)
			out[inst] = strings.TrimSpace(string(b))
		}
	}
	return out
}

// startWeb starts web@1..3 (one per host: they conflict) from the v1 file
// and waits until all run.
func (e *env) startWeb(t *testing.T, obs *hosts.Host) {
	t.Helper()
	writeUnit(t, obs, "web@.service", webUnit("v1"))
	e.fleetctl(t, obs, "start", unit("web@1.service"), unit("web@2.service"), unit("web@3.service"))
	_, err := e.API(obs).WaitActive(e.ctx, 30*time.Second, func(p platform.Placement) bool {
		return len(p["web@1.service"])+len(p["web@2.service"])+len(p["web@3.service"]) == 3
	})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"1": "v1", "2": "v1", "3": "v1"}, e.versions(t))
}

// TestRollout runs rolling updates (fleetctl update) of three instances on
// three hosts while every host's systemd is sampled every 100 ms.
func TestRollout(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, conf: map[string]string{"agent_ttl": fmt.Sprint(agentTTL.Seconds())}})

	t.Run("a rolling update never leaves fewer than two of three copies active", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		e.startWeb(t, obs)
		writeUnit(t, obs, "web-v2.service", webUnit("v2", "HealthCheck=test -e /run/web-%i.version"))
		probe := e.startProbe(t)
		start := time.Now()
		out := e.fleetctl(t, obs, "update", "web@*", "--file", unit("web-v2.service"), "--wait")
		took := time.Since(start)
		minActive, samples := probe.end()
		t.Logf("fleetctl update:\n%s", out)
		require.Contains(t, out, "Rollout web@*.service: done, 3/3 copies healthy")
		require.GreaterOrEqual(t, minActive, 2, "copies active at the worst sample (%d samples)", samples)
		require.Equal(t, map[string]string{"1": "v2", "2": "v2", "3": "v2"}, e.versions(t))
		figure(t, "rolling update of 3 instances", took, fmt.Sprintf("UpdateMinHealthy 2s, 1 at a time; at least %d of 3 active in %d samples 100 ms apart", minActive, samples))
	})

	t.Run("a new version that fails its health check is reverted everywhere", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		e.startWeb(t, obs)
		writeUnit(t, obs, "web-bad.service", webUnit("bad", "HealthCheck=/bin/false", "UpdateAutoRevert=true"))
		probe := e.startProbe(t)
		out, err := e.Fleetctl(e.ctx, obs, "update", "web@*", "--file", unit("web-bad.service"), "--wait")
		minActive, samples := probe.end()
		require.Error(t, err, "a reverted rollout exits non-zero:\n%s", out)
		st := e.rolloutStatus(t, obs, "web@*")
		require.Equal(t, "reverted", st.Phase, "%+v", st)
		require.Contains(t, st.Message, "health check: fail: exit status 1")
		require.Equal(t, map[string]string{"1": "v1", "2": "v1", "3": "v1"}, e.versions(t))
		require.GreaterOrEqual(t, minActive, 2, "copies active at the worst sample (%d samples)", samples)
		figure(t, "failed update: start -> reverted", st.Ended.Sub(st.Started), fmt.Sprintf("HealthCheck=/bin/false fails for UpdateMinHealthy 2s, then the old body goes back; at least %d of 3 active", minActive))
		figure(t, "failed update: revert", st.Ended.Sub(st.Reverting), "copy found failed -> old body active again everywhere")
	})

	t.Run("a rollout survives killing the engine leader's fleetd", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		e.startWeb(t, obs)
		writeUnit(t, obs, "web-v2.service", webUnit("v2"))
		probe := e.startProbe(t)
		e.fleetctl(t, obs, "update", "web@*", "--file", unit("web-v2.service"))
		require.NoError(t, platform.Wait(e.ctx, 60*time.Second, func() bool {
			return e.rolloutStatus(t, obs, "web@*").Healthy >= 1
		}))
		leader := e.byID(t, e.engineLeader(t))
		require.Equal(t, "running", e.rolloutStatus(t, obs, "web@*").Phase, "killed mid-way")
		require.NoError(t, e.KillFleet(e.ctx, leader))
		killed := time.Now()
		var st rolloutStatus
		require.NoError(t, platform.Wait(e.ctx, 90*time.Second, func() bool {
			st = e.rolloutStatus(t, e.observer(t), "web@*")
			return st.Phase == "done" || st.Phase == "reverted"
		}))
		minActive, samples := probe.end()
		require.Equal(t, "done", st.Phase, "%+v", st)
		require.Equal(t, map[string]string{"1": "v2", "2": "v2", "3": "v2"}, e.versions(t))
		require.GreaterOrEqual(t, minActive, 2, "copies active at the worst sample (%d samples)", samples)
		figure(t, "rollout after the leader's fleetd was killed", time.Since(killed), fmt.Sprintf("kill -> rollout done under the new leader; at least %d of 3 active", minActive))
	})
}
