package functional

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// etcdOutage is how long the whole etcd cluster is down in the outage
// scenario: ten times agent_ttl, so every lease would have expired.
const etcdOutage = 30 * time.Second

// TestEtcdFailures runs the scenarios in which fleet's etcd cluster (three
// members on the machine) loses a member, or stops altogether: on three
// hosts, with units of every kind running, none may stop.
func TestEtcdFailures(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerShared,
		conf: map[string]string{"agent_ttl": fmt.Sprint(agentTTL.Seconds())}})
	ctx := e.ctx
	all := e.running()
	running := []string{"hello.service", "goodbye.service", "global.service", "conflict.0.service", "conflict.1.service"}

	// startAll starts units of every kind, and returns where they are active
	// and their main PIDs.
	startAll := func(t *testing.T) (platform.Placement, map[string]string) {
		t.Helper()
		obs := e.observer(t)
		e.fleetctl(t, obs, append([]string{"start"}, units(running...)...)...)
		e.fleetctl(t, obs, "load", unit("goodbye@loaded.service"))
		e.fleetctl(t, obs, "submit", unit("conflict.2.service"))
		p, err := e.api(t).WaitCount(ctx, 10*time.Second, 7) // global.service three times
		require.NoError(t, err)
		return p, e.pids(t, p)
	}

	t.Run("one etcd member of three killed: no unit stops", func(t *testing.T) {
		e.scenario(t)
		for _, h := range all {
			writeUnit(t, h, "goodbye@loaded.service", sleeperUnit)
		}
		p, pids := startAll(t)
		files := e.listUnitFiles(t, e.observer(t))
		var victim *hosts.EtcdMember
		for _, m := range e.Etcd() {
			if m.IsLeader(ctx) {
				victim = m
			}
		}
		require.NotNil(t, victim, "an etcd member leads")
		since := time.Now()
		require.NoError(t, victim.Kill()) // the leader: the worst member to lose
		killed := time.Now()

		// fleet goes on with two members of three.
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool {
			_, err := e.API(all[0]).Units(ctx)
			return err == nil
		}))
		figure(t, "API answers again after etcd leader lost", time.Since(killed), "")
		writeUnit(t, all[0], "during.service", sleeperUnit)
		e.fleetctl(t, all[0], "start", unit("during.service"))
		figure(t, "etcd leader killed -> new unit active", time.Since(killed), "")
		time.Sleep(agentTTL + settle) // leases must be kept alive through the other members
		require.NoError(t, e.WaitMachinesOn(ctx, all[1], 3, time.Second), "no machine was lost")
		q, err := e.API(all[2]).WaitCount(ctx, time.Second, 8)
		require.NoError(t, err)
		require.Equal(t, p, without(q, "during.service"), "nothing moved")
		require.Equal(t, pids, e.pids(t, without(q, "during.service")), "nothing restarted")
		require.Equal(t, files, without2(e.listUnitFiles(t, all[1]), "during.service"))
		e.requireNoStops(t, since, all, running...)

		require.NoError(t, victim.Start(ctx))
		require.NoError(t, e.WaitEtcd(ctx))
	})

	t.Run("the whole etcd cluster stopped for 30 s: no unit stops, nothing is lost", func(t *testing.T) {
		e.scenario(t)
		for _, h := range all {
			writeUnit(t, h, "goodbye@loaded.service", sleeperUnit)
		}
		p, pids := startAll(t)
		files := e.listUnitFiles(t, e.observer(t))
		since := time.Now()
		require.NoError(t, e.StopEtcd(ctx))
		stopped := time.Now()
		_, err := e.Fleetctl(ctx, all[0], "--request-timeout", "2s", "list-units")
		require.Error(t, err, "etcd is down")
		time.Sleep(etcdOutage / 2)
		require.Equal(t, pids, e.pids(t, p), "units run on while etcd is down")
		time.Sleep(etcdOutage - time.Since(stopped))

		restart := time.Now()
		require.NoError(t, e.StartEtcd(ctx))
		back := time.Now()
		figure(t, "etcd cluster start -> healthy", back.Sub(restart), fmt.Sprintf("after %s down", back.Sub(stopped).Round(time.Second)))
		require.NoError(t, e.WaitMachinesOn(ctx, all[1], 3, 60*time.Second))
		figure(t, "etcd back -> all machines listed", time.Since(back), "")
		q, err := e.API(all[2]).WaitActive(ctx, 60*time.Second, func(q platform.Placement) bool { return q.Count() == 7 })
		require.NoError(t, err)
		figure(t, "etcd back -> all unit states back", time.Since(back), "")
		var last [][]string
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool {
			last = e.listUnitFiles(t, all[1])
			return slices.EqualFunc(files, last, slices.Equal)
		}), "no unit, desired state or hash is lost: before %v, after %v", files, last)
		time.Sleep(agentTTL + settle)

		t.Run("no unit stops or moves", func(t *testing.T) {
			needs(t, bugEtcdOutage)
			q, err = e.API(all[2]).WaitCount(ctx, time.Second, 7)
			require.NoError(t, err)
			require.Equal(t, p, q, "nothing moved")
			require.Equal(t, pids, e.pids(t, q), "nothing restarted")
			e.requireNoStops(t, since, all, running...)
		})

		writeUnit(t, all[0], "after.service", sleeperUnit)
		start := time.Now()
		e.fleetctl(t, all[0], "start", unit("after.service"))
		figure(t, "after the outage: new unit active", time.Since(start), "")
	})
}

// without2 returns rows without those of unit name.
func without2(rows [][]string, name string) [][]string {
	return slices.DeleteFunc(slices.Clone(rows), func(r []string) bool { return r[0] == name })
}
