package functional

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// agentTTL is the machine presence TTL of the groups that lose hosts: a
// dead host's units move about this long after it died.
const agentTTL = 3 * time.Second

// TestHostFailures runs the scenarios in which hosts die, are cut off the
// network or lose their fleetd, on three hosts (dead ones are replaced by
// new hosts between scenarios) and a three-member etcd cluster.
func TestHostFailures(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerShared,
		conf: map[string]string{"agent_ttl": fmt.Sprint(agentTTL.Seconds())}})
	ctx := e.ctx

	t.Run("a dead host's unit runs elsewhere", func(t *testing.T) {
		e.scenario(t)
		e.fleetctl(t, e.observer(t), "start", unit("hello.service"))
		victim := e.unitOn(t, "hello.service")
		require.NoError(t, victim.Kill())
		killed := time.Now()
		p, err := e.api(t).WaitActive(ctx, 30*time.Second, func(p platform.Placement) bool {
			on := p.On("hello.service")
			return on != "" && on != victim.MachineID
		})
		require.NoError(t, err)
		figure(t, "failover (host killed)", time.Since(killed), fmt.Sprintf("agent_ttl %s; now on %s", agentTTL, e.byID(t, p.On("hello.service")).Name))
	})

	t.Run("a new member takes only the unit of a lost member", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		e.fleetctl(t, obs, "start", unit("conflict.0.service"), unit("conflict.1.service"), unit("conflict.2.service"))
		before, err := e.api(t).WaitCount(ctx, 10*time.Second, 3)
		require.NoError(t, err)
		requireDistinctMachines(t, before)
		victim := e.byID(t, before.On("conflict.1.service"))
		pids := e.pids(t, without(before, "conflict.1.service"))
		require.NoError(t, victim.Kill())

		// conflict.1 fits nowhere until a machine joins: the others are taken.
		require.NoError(t, e.WaitMachinesOn(ctx, e.observer(t, victim), 2, 15*time.Second))
		_, err = e.api(t, victim).WaitCount(ctx, 10*time.Second, 2)
		require.NoError(t, err)
		time.Sleep(settle)
		start := time.Now()
		nh := e.addHost(t)
		after, err := e.api(t, victim).WaitActive(ctx, 15*time.Second, func(p platform.Placement) bool {
			return p.Count() == 3 && p.On("conflict.1.service") == nh.MachineID
		})
		require.NoError(t, err, "the new member %s takes conflict.1.service", nh.Name)
		figure(t, "new member boot -> lost unit active on it", time.Since(start), "incl. host boot and fleetd install")
		require.Equal(t, without(before, "conflict.1.service"), without(after, "conflict.1.service"), "no other unit moves")
		require.Equal(t, pids, e.pids(t, without(after, "conflict.1.service")), "no other unit restarts")
	})

	t.Run("a rebooted member causes exactly one unit to move", func(t *testing.T) {
		// As in fleet's suite, the rebooted member comes back as a new
		// machine (a fresh machine ID): it is powered off cleanly, its lease
		// expires, and a new host joins.
		e.scenario(t)
		obs := e.observer(t)
		e.fleetctl(t, obs, "start", unit("conflict.0.service"), unit("conflict.1.service"), unit("conflict.2.service"))
		before, err := e.api(t).WaitCount(ctx, 10*time.Second, 3)
		require.NoError(t, err)
		victim := e.running(obs)[0]
		require.NoError(t, victim.Stop(ctx))
		require.NoError(t, e.WaitMachinesOn(ctx, obs, 2, 15*time.Second))
		e.addHost(t)
		after, err := e.API(obs).WaitCount(ctx, 15*time.Second, 3)
		require.NoError(t, err)
		moved := 0
		for name := range before {
			if before.On(name) != after.On(name) {
				moved++
			}
		}
		require.Equal(t, 1, moved, "before %v, after %v", before, after)
	})

	t.Run("the engine leader's host dies and another engine takes over", func(t *testing.T) {
		e.scenario(t)
		leaderID := e.engineLeader(t)
		require.NotEmpty(t, leaderID)
		victim := e.byID(t, leaderID)
		obs := e.observer(t, victim)
		e.fleetctl(t, obs, "start", unit("pinned@"+victim.MachineID+".service"))
		require.NoError(t, victim.Kill())
		killed := time.Now()
		var newLeader string
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool {
			newLeader = e.engineLeader(t)
			return newLeader != "" && newLeader != leaderID
		}))
		figure(t, "engine takeover", time.Since(killed), fmt.Sprintf("leader host killed -> new leader elected (engine_leader_ttl 3 s), %s", e.byID(t, newLeader).Name))
		e.fleetctl(t, obs, "start", unit("hello.service"))
		figure(t, "leader killed -> new unit active", time.Since(killed), "new unit started right after the kill")
		_, err := e.API(obs).WaitActive(ctx, 15*time.Second, func(p platform.Placement) bool {
			return p.On("hello.service") != "" && len(p["pinned@"+victim.MachineID+".service"]) == 0
		})
		require.NoError(t, err, "the new engine places new units and drops the dead machine's")
	})

	t.Run("MachineOf pairs move together", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		for i := range 3 {
			e.fleetctl(t, obs, "start", "--no-block", unit(fmt.Sprintf("ping.%d.service", i)), unit(fmt.Sprintf("pong.%d.service", i)))
		}
		before, err := e.api(t).WaitCount(ctx, 10*time.Second, 6)
		require.NoError(t, err)
		victim := e.byID(t, before.On("ping.1.service"))
		require.NoError(t, victim.Kill())
		killed := time.Now()
		after, err := e.api(t, victim).WaitActive(ctx, 30*time.Second, func(p platform.Placement) bool {
			ping := p.On("ping.1.service")
			return p.Count() == 6 && ping != "" && ping != victim.MachineID
		})
		require.NoError(t, err)
		figure(t, "failover of a MachineOf pair", time.Since(killed), "")
		require.Equal(t, after.On("ping.1.service"), after.On("pong.1.service"), "pong.1 moves with ping.1")
	})

	t.Run("a host cut off the network keeps its units", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		victim := e.running(obs)[0]
		// Units that cannot move: pinned to the victim, and global.
		launched := "pinned@" + victim.MachineID + ".service"
		loaded := "single@loaded.service"
		writeUnit(t, obs, loaded, "[Service]\nExecStart=/bin/sleep infinity\n[X-Fleet]\nMachineID="+victim.MachineID+"\n")
		e.fleetctl(t, obs, "start", unit(launched), unit("global.service"))
		e.fleetctl(t, obs, "load", unit(loaded))
		e.fleetctl(t, obs, "submit", unit("hello.service"))
		_, err := e.API(obs).WaitCount(ctx, 10*time.Second, 4)
		require.NoError(t, err)
		unitFiles := e.listUnitFiles(t, obs)
		pid := mainPID(t, ctx, victim, launched)
		gpid := mainPID(t, ctx, victim, "global.service")

		since := time.Now()
		e.quiet[victim] = true
		require.NoError(t, victim.Disconnect(ctx))
		require.NoError(t, e.WaitMachinesOn(ctx, obs, 2, 30*time.Second))
		figure(t, "cut host dropped from the cluster", time.Since(since), fmt.Sprintf("agent_ttl %s", agentTTL))
		time.Sleep(settle)
		// Seen from the host itself: nothing stopped.
		require.Equal(t, pid, mainPID(t, ctx, victim, launched))
		require.Equal(t, gpid, mainPID(t, ctx, victim, "global.service"))
		require.Equal(t, "inactive", e.sh(t, victim, "systemctl", "show", "-p", "ActiveState", "--value", loaded))

		require.NoError(t, victim.Reconnect(ctx))
		back := time.Now()
		delete(e.quiet, victim)
		require.NoError(t, e.WaitMachinesOn(ctx, obs, 3, 30*time.Second))
		_, err = e.API(obs).WaitActive(ctx, 20*time.Second, func(p platform.Placement) bool {
			return p.On(launched) == victim.MachineID && len(p["global.service"]) == 3
		})
		require.NoError(t, err)
		figure(t, "cut host back in the cluster", time.Since(back), "reconnected -> its units listed active again")
		time.Sleep(settle)
		require.Equal(t, unitFiles, e.listUnitFiles(t, obs), "desired states are unchanged")

		t.Run("nothing flaps when it is back", func(t *testing.T) {
			needs(t, bugReconnectFlap)
			require.Equal(t, pid, mainPID(t, ctx, victim, launched), "no restart after reconnecting")
			require.Equal(t, gpid, mainPID(t, ctx, victim, "global.service"), "no restart after reconnecting")
			e.requireNoStops(t, since, []*hosts.Host{victim}, launched, "global.service", loaded)
		})
	})

	t.Run("fleetd stopped gracefully: its units keep running; within agent_ttl nothing moves", func(t *testing.T) {
		// A fleetd stopped with SIGTERM does not revoke its lease and leaves
		// its units running: started again within agent_ttl, it adopts the
		// lease and nothing moves.
		e.scenario(t)
		obs := e.observer(t)
		e.fleetctl(t, obs, "start", unit("hello.service"))
		h := e.unitOn(t, "hello.service")
		if h == obs {
			obs = e.observer(t, h)
		}
		pid := mainPID(t, ctx, h, "hello.service")
		e.quiet[h] = true
		start := time.Now()
		require.NoError(t, e.StopFleet(ctx, h))
		require.Equal(t, pid, mainPID(t, ctx, h, "hello.service"), "the unit runs on")
		require.NoError(t, e.StartFleet(ctx, h))
		delete(e.quiet, h)
		figure(t, "fleetd stop+start", time.Since(start), "")
		require.Less(t, time.Since(start), agentTTL, "the test itself was too slow for agent_ttl")
		time.Sleep(settle)
		require.NoError(t, e.WaitMachinesOn(ctx, obs, 3, 5*time.Second))
		p, err := e.API(obs).WaitCount(ctx, 5*time.Second, 1)
		require.NoError(t, err)
		require.Equal(t, h.MachineID, p.On("hello.service"), "nothing moved")
		require.Equal(t, pid, mainPID(t, ctx, h, "hello.service"), "nothing restarted")
	})

	t.Run("fleetd stopped gracefully past agent_ttl: units placed elsewhere, stale copies unloaded when it is back", func(t *testing.T) {
		// Past agent_ttl its machine is gone: the engine places its units
		// elsewhere while the stopped fleetd's host still runs its copies
		// (nothing there stops them). Back, fleetd unloads those stale copies.
		e.scenario(t)
		obs := e.observer(t)
		e.fleetctl(t, obs, "start", unit("hello.service"))
		h := e.unitOn(t, "hello.service")
		if h == obs {
			obs = e.observer(t, h)
		}
		e.quiet[h] = true
		require.NoError(t, e.StopFleet(ctx, h))
		stopped := time.Now()
		p, err := e.API(obs).WaitActive(ctx, 30*time.Second, func(p platform.Placement) bool {
			on := p.On("hello.service")
			return on != "" && on != h.MachineID
		})
		require.NoError(t, err)
		figure(t, "failover (fleetd stopped)", time.Since(stopped), fmt.Sprintf("agent_ttl %s", agentTTL))
		other := e.byID(t, p.On("hello.service"))
		otherPID := mainPID(t, ctx, other, "hello.service")
		require.Equal(t, "active", e.sh(t, h, "systemctl", "is-active", "hello.service"), "the stale copy runs while fleetd is down")

		start := time.Now()
		require.NoError(t, e.StartFleet(ctx, h))
		delete(e.quiet, h)
		require.NoError(t, platform.Wait(ctx, 15*time.Second, func() bool {
			out, _ := h.Exec(ctx, "systemctl", "is-active", "hello.service")
			return strings.TrimSpace(string(out)) != "active"
		}), "fleetd, back, stops its stale copy")
		figure(t, "stale copy stopped after fleetd back", time.Since(start), "")
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool {
			_, err := h.Exec(ctx, "test", "-e", "/run/fleet/units/hello.service")
			return err != nil
		}), "and removes its unit file")
		time.Sleep(settle)
		q, err := e.API(obs).WaitCount(ctx, 5*time.Second, 1)
		require.NoError(t, err)
		require.Equal(t, other.MachineID, q.On("hello.service"), "the unit stays where it moved")
		require.Equal(t, otherPID, mainPID(t, ctx, other, "hello.service"), "and is not restarted there")
	})
}

// without returns p without unit name.
func without(p platform.Placement, name string) platform.Placement {
	q := maps.Clone(p)
	delete(q, name)
	for k, v := range q {
		q[k] = slices.Clone(v)
	}
	return q
}
