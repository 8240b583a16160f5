package functional

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/machine"
)

// TestPlacement runs the resource, spread and explain scenarios on three
// hosts whose fleetds reserve different amounts of memory, so that they
// offer 1.5, 2.5 and 3.5 GiB, and whose zone metadata is a, a, b.
func TestPlacement(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster})
	ctx := e.ctx
	here, err := machine.DetectCapacity("/proc/meminfo", 0, 0)
	require.NoError(t, err)
	total := here.Memory
	const gib = int64(1) << 30
	require.Greater(t, total, 4*gib, "the hosts share this machine's memory; the scenarios need 4 GiB of it to reserve from")
	zones := []string{"a", "a", "b"}
	offer := map[string]int64{}
	for i, h := range e.Hosts() {
		conf := e.FleetConf(h)
		free := int64(3+2*i) * gib / 2 // 1.5, 2.5, 3.5 GiB
		conf["reserved_memory"] = fmt.Sprint(total - free)
		conf["metadata"] = "hostname=" + h.Name + ",zone=" + zones[i]
		require.NoError(t, e.WriteFleetConf(h, conf))
		require.NoError(t, e.RestartFleet(ctx, h))
		offer[h.MachineID] = free
	}
	// Every machine registered again with its capacity and zone.
	cli := e.etcdClient(t)
	require.NoError(t, platform.Wait(ctx, 60*time.Second, func() bool {
		r, err := cli.Get(ctx, fleetPrefix+"machines/", clientv3.WithPrefix())
		if err != nil || len(r.Kvs) != 3 {
			return false
		}
		for _, kv := range r.Kvs {
			var m machine.Machine
			if json.Unmarshal(kv.Value, &m) != nil || m.Capacity == nil || m.Capacity.Memory != offer[m.ID] || m.Metadata["zone"] == "" {
				return false
			}
		}
		return true
	}), "machines did not register their capacity")
	out := e.fleetctl(t, e.observer(t), "list-machines", "--no-legend", "--fields", "capacity")
	for _, want := range []string{"1.5 GiB", "2.5 GiB", "3.5 GiB"} {
		require.Contains(t, out, want)
	}

	t.Run("units with MemoryMax fill the machines; the next is unplaced with the short resource", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		writeUnit(t, obs, "fill@.service", "[Unit]\nDescription=fills %i\n[Service]\nExecStart=/bin/sleep infinity\nMemoryMax=1G\n")
		var names []string
		for i := 1; i <= 6; i++ {
			names = append(names, unit(fmt.Sprintf("fill@%d.service", i)))
		}
		e.fleetctl(t, obs, append([]string{"start", "--no-block"}, names...)...)
		p, err := e.API(obs).WaitCount(ctx, 60*time.Second, 6)
		require.NoError(t, err)
		per := map[string]int{}
		for i := 1; i <= 6; i++ {
			per[p.On(fmt.Sprintf("fill@%d.service", i))]++
		}
		for id, free := range offer {
			require.Equal(t, int(free/gib), per[id], "1 GiB units on machine %s offering %d MiB", id, free>>20)
		}
		e.fleetctl(t, obs, "start", "--no-block", unit("fill@7.service"))
		var reason string
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool {
			r, err := cli.Get(ctx, fleetPrefix+"unplaced/fill@7.service")
			if err != nil || len(r.Kvs) == 0 {
				return false
			}
			reason = string(r.Kvs[0].Value)
			return true
		}))
		require.Contains(t, reason, "no machine has 1 GiB memory free; largest free: 512 MiB on ")
		out := e.fleetctl(t, obs, "explain", "fill@7.service")
		require.Equal(t, 3, strings.Count(out, "Resources"), "every machine rejects it for its memory:\n%s", out)
		require.Contains(t, out, "needs 1 GiB memory, 512 MiB free")
		t.Logf("fleetctl explain fill@7.service:\n%s", out)
		code, body, err := e.API(obs).Do(ctx, http.MethodGet, "/units/fill@7.service/placement", "")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "%s", body)
		var ex struct {
			Unplaced string
			Machines []struct{ Verdict, Checker string }
		}
		require.NoError(t, json.Unmarshal(body, &ex))
		require.Len(t, ex.Machines, 3)
		require.Equal(t, reason, ex.Unplaced)
	})

	t.Run("systemd enforces [X-Fleet] Memory= and CPU=", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		writeUnit(t, obs, "limited.service", "[Unit]\nDescription=limited\n[Service]\nExecStart=/bin/sleep infinity\n[X-Fleet]\nMemory=256M\nCPU=0.5\n")
		e.fleetctl(t, obs, "start", "--no-block", unit("limited.service"))
		p, err := e.API(obs).WaitCount(ctx, 30*time.Second, 1)
		require.NoError(t, err)
		h := e.byID(t, p.On("limited.service"))
		out := e.sh(t, h, "systemctl", "show", "-p", "MemoryMax", "-p", "CPUQuotaPerSecUSec", "limited.service")
		require.Contains(t, out, "MemoryMax=268435456")
		require.Contains(t, out, "CPUQuotaPerSecUSec=500ms")
	})

	t.Run("SpreadBy=zone puts 4 instances 2/2 over zones a, a, b", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		writeUnit(t, obs, "spread@.service", "[Unit]\nDescription=spread %i\n[Service]\nExecStart=/bin/sleep infinity\n[X-Fleet]\nSpreadBy=zone\n")
		var names []string
		for i := 1; i <= 4; i++ {
			names = append(names, unit(fmt.Sprintf("spread@%d.service", i)))
		}
		e.fleetctl(t, obs, append([]string{"start", "--no-block"}, names...)...)
		p, err := e.API(obs).WaitCount(ctx, 60*time.Second, 4)
		require.NoError(t, err)
		zoneOf := map[string]string{}
		for i, h := range e.Hosts() {
			zoneOf[h.MachineID] = zones[i]
		}
		byZone := map[string]int{}
		for i := 1; i <= 4; i++ {
			byZone[zoneOf[p.On(fmt.Sprintf("spread@%d.service", i))]]++
		}
		require.Equal(t, map[string]int{"a": 2, "b": 2}, byZone)
	})

	t.Run("a bad MachineMetadata operator is refused at submit with its column", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		writeUnit(t, obs, "badop.service", "[Service]\nExecStart=/bin/true\n[X-Fleet]\nMachineMetadata=zone in (a,b\n")
		out, err := e.Fleetctl(ctx, obs, "submit", unit("badop.service"))
		require.Error(t, err)
		require.Contains(t, out, `column 9: list "(a,b" has no closing ')'`)
	})
}
