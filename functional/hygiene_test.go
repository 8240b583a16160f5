package functional

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// The hygiene group's short periods, so that what a cluster does over
// minutes and days happens within a scenario.
const (
	gcInterval     = time.Second      // engine_gc_interval
	bodyGrace      = 3 * time.Second  // engine_body_grace
	machineGCAfter = 20 * time.Second // machine_gc_after
)

// fleetPrefix is fleet's etcd key prefix, which the clusters keep.
const fleetPrefix = "/_coreos.com/fleet/"

// semver is a semantic version (semver.org 2.0.0), as fleetd and fleetctl
// print theirs.
const semver = `v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?`

// TestHygiene runs the scenarios of etcd's upkeep by the engine leader
// (bodies nothing uses, placements of machines gone for good) and of engine
// versions, on three hosts and a three-member etcd cluster.
func TestHygiene(t *testing.T) {
	e := boot(t, spec{hosts: 3, etcd: etcdCluster, docker: dockerShared, conf: map[string]string{
		"agent_ttl":          fmt.Sprint(agentTTL.Seconds()),
		"engine_gc_interval": gcInterval.String(),
		"engine_body_grace":  bodyGrace.String(),
		"machine_gc_after":   machineGCAfter.String(),
	}})
	ctx := e.ctx
	cli := e.etcdClient(t)

	// exists reports whether key is in etcd.
	exists := func(t *testing.T, key string) bool {
		t.Helper()
		r, err := cli.Get(ctx, key, clientv3.WithCountOnly())
		require.NoError(t, err)
		return r.Count > 0
	}
	// bodyOf returns the hash of unit name's body.
	bodyOf := func(t *testing.T, name string) string {
		t.Helper()
		r, err := cli.Get(ctx, fleetPrefix+"units/"+name)
		require.NoError(t, err)
		require.Len(t, r.Kvs, 1, "unit %s in etcd", name)
		var u struct{ Hash string }
		require.NoError(t, json.Unmarshal(r.Kvs[0].Value, &u))
		require.NotEmpty(t, u.Hash, "unit %s: %s", name, r.Kvs[0].Value)
		return u.Hash
	}

	t.Run("a destroyed unit's body is collected after the grace; a body still used stays", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		writeUnit(t, obs, "gone.service", "[Unit]\nDescription=destroyed\n[Service]\nExecStart=/bin/sleep infinity\n")
		// Two units, one body: destroying one leaves the body in use.
		for _, n := range []string{"kept.0.service", "kept.1.service"} {
			writeUnit(t, obs, n, sleeperUnit)
		}
		e.fleetctl(t, obs, "start", unit("gone.service"), unit("kept.0.service"), unit("kept.1.service"))
		_, err := e.API(obs).WaitCount(ctx, 15*time.Second, 3)
		require.NoError(t, err)
		gone, kept := bodyOf(t, "gone.service"), bodyOf(t, "kept.0.service")
		require.Equal(t, kept, bodyOf(t, "kept.1.service"), "identical unit files share a body")
		require.NotEqual(t, gone, kept)

		e.fleetctl(t, obs, "destroy", "gone.service", "kept.0.service")
		destroyed := time.Now()
		require.True(t, exists(t, fleetPrefix+"bodies/"+gone), "a body is kept for engine_body_grace after its unit is destroyed")
		require.NoError(t, platform.Wait(ctx, bodyGrace+10*gcInterval+10*time.Second, func() bool {
			return !exists(t, fleetPrefix+"bodies/"+gone)
		}), "the body of destroyed gone.service is collected")
		figure(t, "destroyed unit's body collected", time.Since(destroyed), fmt.Sprintf("engine_body_grace %s, engine_gc_interval %s", bodyGrace, gcInterval))
		time.Sleep(settle) // passes that would wrongly collect the shared body have run
		require.True(t, exists(t, fleetPrefix+"bodies/"+kept), "kept.1.service still uses the body kept.0.service had")
		require.Contains(t, e.fleetctl(t, obs, "cat", "kept.1.service"), "ExecStart=/bin/sleep infinity")
		p, err := e.API(obs).WaitCount(ctx, 5*time.Second, 1)
		require.NoError(t, err)
		require.NotEmpty(t, p.On("kept.1.service"))
	})

	t.Run("a dead host's pinned placement is kept for machine_gc_after, then dropped; a plain unit moves at once", func(t *testing.T) {
		e.scenario(t)
		obs := e.observer(t)
		writeUnit(t, obs, "roamer.service", sleeperUnit)
		e.fleetctl(t, obs, "start", unit("roamer.service"))
		victim := e.unitOn(t, "roamer.service")
		if victim == obs {
			obs = e.observer(t, victim)
		}
		pinned := "pinned@" + victim.MachineID + ".service"
		e.fleetctl(t, obs, "start", unit(pinned))
		p, err := e.API(obs).WaitCount(ctx, 15*time.Second, 2)
		require.NoError(t, err)
		require.Equal(t, victim.MachineID, p.On(pinned))
		placement := fleetPrefix + "schedule/" + victim.MachineID + "/" + pinned

		require.NoError(t, victim.Kill())
		killed := time.Now()
		_, err = e.API(obs).WaitActive(ctx, 30*time.Second, func(p platform.Placement) bool {
			on := p.On("roamer.service")
			return on != "" && on != victim.MachineID
		})
		require.NoError(t, err, "the plain unit moves off the dead host")
		figure(t, "failover (host killed, hygiene on)", time.Since(killed), fmt.Sprintf("agent_ttl %s", agentTTL))
		require.NoError(t, e.WaitMachinesOn(ctx, obs, 2, 15*time.Second))
		time.Sleep(settle) // several hygiene passes see the machine absent
		require.Less(t, time.Since(killed), machineGCAfter, "the test itself was too slow for machine_gc_after")
		require.True(t, exists(t, placement), "the pinned unit's placement is kept while machine_gc_after has not passed")
		require.True(t, exists(t, fleetPrefix+"absent/"+victim.MachineID), "the leader records since when the machine is absent")

		// Dropped, the placement is gone and the engine (at its next full
		// read of etcd) says so instead of waiting for the machine.
		gone := fmt.Sprintf("MachineID=%s is not present", victim.MachineID)
		var reason string
		require.NoError(t, platform.Wait(ctx, machineGCAfter+30*time.Second, func() bool {
			if exists(t, placement) {
				return false
			}
			reason = e.unplacedReason(t, obs, pinned)
			return reason == gone
		}), "the pinned unit is unplaced, no placement kept, once machine_gc_after has passed; placement in etcd: %v; reason: %q",
			exists(t, placement), reason)
		figure(t, "dead host's pinned placement dropped", time.Since(killed), fmt.Sprintf("machine_gc_after %s, engine_gc_interval %s; reason updated at the engine's next resync", machineGCAfter, gcInterval))
		require.GreaterOrEqual(t, time.Since(killed), machineGCAfter, "dropped before machine_gc_after")
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool {
			return !exists(t, fleetPrefix+"absent/"+victim.MachineID)
		}), "the absence record goes with the placements")
		p, err = e.API(obs).WaitCount(ctx, 5*time.Second, 1)
		require.NoError(t, err)
		require.NotEqual(t, victim.MachineID, p.On("roamer.service"))
	})

	t.Run("versions: semantic versions shown; a bogus newer engine version stops scheduling until reset", func(t *testing.T) {
		e.scenario(t)
		b, err := os.ReadFile("../VERSION")
		require.NoError(t, err)
		want := strings.TrimSpace(string(b))
		require.Regexp(t, "^"+semver+"$", want, "the VERSION file")
		obs := e.observer(t)
		require.Equal(t, "fleetd version "+want, e.sh(t, obs, "fleetd", "--version"))
		require.Equal(t, "fleetctl version "+want, strings.TrimSpace(e.fleetctl(t, obs, "version")))
		versionKey := fleetPrefix + "engine/version"
		stored := func(t *testing.T) string {
			t.Helper()
			r, err := cli.Get(ctx, versionKey)
			require.NoError(t, err)
			if len(r.Kvs) == 0 {
				return ""
			}
			return string(r.Kvs[0].Value)
		}
		require.Equal(t, want, stored(t), "the leader recorded its version as the cluster's")
		out, err := e.Fleetctl(ctx, obs, append(e.etcdFlags(), "reset-engine-version")...)
		require.Error(t, err, "reset-engine-version refuses while an engine leads: %s", out)
		require.Contains(t, out, "--force")
		require.Equal(t, want, stored(t), "a refused reset leaves the record")

		_, err = cli.Put(ctx, versionKey, "99.0.0")
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = cli.Put(ctx, versionKey, want) }) // best effort, should the scenario fail midway
		// The leader checks the record when it campaigns: a fleetd restart
		// hands the lead to the others, which find 99.0.0 newer than theirs.
		leader := e.engineLeader(t)
		require.NotEmpty(t, leader)
		require.NoError(t, e.RestartFleet(ctx, e.byID(t, leader)))
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool { return e.engineLeader(t) == "" }),
			"no engine leads or campaigns under a newer recorded version")
		writeUnit(t, obs, "late.service", sleeperUnit)
		e.fleetctl(t, obs, "start", "--no-block", unit("late.service"))
		time.Sleep(settle)
		states, err := e.API(obs).States(ctx)
		require.NoError(t, err)
		require.Empty(t, platform.Active(states).On("late.service"), "no engine places it")
		r, err := cli.Get(ctx, fleetPrefix+"placed/late.service/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		require.NoError(t, err)
		require.Zero(t, r.Count, "late.service has no placement")
		require.Empty(t, e.engineLeader(t))
		require.Equal(t, "99.0.0", stored(t), "no engine overwrote the newer record")

		out = e.fleetctl(t, obs, append(e.etcdFlags(), "reset-engine-version", "--force")...)
		require.Contains(t, out, "Cleared the cluster engine version 99.0.0")
		reset := time.Now()
		_, err = e.API(obs).WaitActive(ctx, 45*time.Second, func(p platform.Placement) bool { return p.On("late.service") != "" })
		require.NoError(t, err, "an engine leads again and places late.service")
		figure(t, "engine version reset -> new unit active", time.Since(reset), "engines look again every engine_reconcile_interval (10 s)")
		require.NotEmpty(t, e.engineLeader(t))
		require.Equal(t, want, stored(t), "the new leader recorded its own version")
	})
}

// etcdClient returns a client of the cluster's etcd from the test process
// (over TLS with the admin certificate on a secured cluster), closed at the
// end of t.
func (e *env) etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	tlsCfg, err := e.EtcdTLSConfig()
	require.NoError(t, err)
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(e.EtcdServers, ","),
		DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: tlsCfg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// etcdFlags are fleetctl's flags to talk to the cluster's etcd directly
// (--driver=etcd), from inside a host: with the host's own certificate on
// a secured cluster.
func (e *env) etcdFlags() []string {
	flags := []string{"--driver=etcd", "--endpoint=" + e.EtcdServers}
	if e.Security != nil {
		flags = append(flags, "--ca-file="+platform.HostCAFile, "--cert-file="+platform.HostCertFile, "--key-file="+platform.HostKeyFile)
	}
	return flags
}

// unplacedReason returns the reason fleetctl list-unit-files on h gives for
// unit name ("" when it shows none).
func (e *env) unplacedReason(t *testing.T, h *hosts.Host, name string) string {
	t.Helper()
	out := e.fleetctl(t, h, "list-unit-files", "--no-legend", "--full", "--fields", "unit,reason")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == name && f[1] != "-" {
			return strings.Join(f[1:], " ")
		}
	}
	return ""
}
