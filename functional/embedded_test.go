package functional

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEmbeddedEtcd runs fleet with no etcd configured, on one host: fleetd
// runs an embedded single-member etcd, so one machine is a working cluster.
// The same host also runs what its own systemd does to fleetd
// (systemdOnTheHost).
func TestEmbeddedEtcd(t *testing.T) {
	e := boot(t, spec{hosts: 1, etcd: etcdEmbedded, docker: dockerShared,
		conf: map[string]string{"embedded_etcd_client_urls": "http://127.0.0.1:2379"}})
	h1 := e.Host("h1")

	t.Run("one machine with fleetd's own etcd runs units", func(t *testing.T) {
		e.scenario(t)
		conf, err := os.ReadFile(h1.Path("/etc/fleet/fleet.conf"))
		require.NoError(t, err)
		require.NotContains(t, string(conf), "etcd_servers")
		start := time.Now()
		out := e.fleetctl(t, h1, "start", unit("hello.service"))
		figure(t, "fleetctl start -> active", time.Since(start), "embedded etcd")
		require.Contains(t, out, "Unit hello.service launched on "+h1.MachineID[:8]+".../"+h1.IP)
		out = e.fleetctl(t, h1, "--driver", "etcd", "list-units", "--no-legend")
		require.Regexp(t, `hello\.service\s+\S+\s+active\s+running`, out, "the embedded etcd also serves fleetctl's etcd driver on loopback")
	})

	t.Run("a restarted fleetd finds its units in its etcd", func(t *testing.T) {
		e.scenario(t)
		e.fleetctl(t, h1, "start", unit("hello.service"))
		pid := mainPID(t, e.ctx, h1, "hello.service")
		require.NoError(t, e.RestartFleet(e.ctx, h1))
		require.NoError(t, e.WaitMachines(e.ctx, 1, 30*time.Second))
		require.Contains(t, e.fleetctl(t, h1, "list-units", "--no-legend"), "hello.service")
		require.Equal(t, pid, mainPID(t, e.ctx, h1, "hello.service"), "the unit keeps running")
	})

	e.systemdOnTheHost(t, h1)
}
