package functional

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

const sleeperUnit = "[Unit]\nDescription=sleeps\n[Service]\nExecStart=/bin/sleep infinity\n"

const helloUnit = `[Unit]
Description=Hello from a Docker container
[Service]
ExecStartPre=-/usr/bin/docker rm -f hello-%m
ExecStart=/usr/bin/docker run --rm --network none --name hello-%m fleet/hello:latest
ExecStop=/usr/bin/docker stop -t 5 hello-%m
`

// TestFleet runs the end-to-end scenarios on one three-host cluster.
func TestFleet(t *testing.T) {
	c := bootCluster(t, 3, true, map[string]string{"agent_ttl": "5"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	h1 := c.Hosts()[0]

	t.Run("list-machines shows every host", func(t *testing.T) {
		out, err := c.Fleetctl(ctx, h1, "list-machines", "--full")
		require.NoError(t, err, out)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Equal(t, []string{"MACHINE", "IP", "METADATA"}, strings.Fields(lines[0]))
		require.Len(t, lines, 4)
		for _, h := range c.Hosts() {
			require.Contains(t, out, h.MachineID)
			require.Regexp(t, regexp.MustCompile(h.MachineID+`\s+`+regexp.QuoteMeta(h.IP)+`\s+hostname=`+h.Name), out)
		}
	})

	t.Run("start, see active, stop, destroy", func(t *testing.T) {
		writeUnit(t, h1, "sleeper.service", sleeperUnit)
		start := time.Now()
		out, err := c.Fleetctl(ctx, h1, "start", "/root/sleeper.service")
		require.NoError(t, err, out)
		t.Logf("fleetctl start returned (unit active) after %.0f ms", ms(time.Since(start)))
		require.Regexp(t, `Unit sleeper.service launched on [0-9a-f]{8}\.\.\./10\.`, out)
		h := hostOf(t, ctx, c, "sleeper.service")
		active, err := h.Exec(ctx, "systemctl", "is-active", "sleeper.service")
		require.NoError(t, err, string(active))
		require.Equal(t, "active", strings.TrimSpace(string(active)))

		out, err = c.Fleetctl(ctx, h1, "list-units", "--no-legend")
		require.NoError(t, err, out)
		require.Regexp(t, `sleeper\.service\s+[0-9a-f]{8}\.\.\./`+regexp.QuoteMeta(h.IP)+`\s+active\s+running`, out)

		out, err = c.Fleetctl(ctx, h1, "list-unit-files", "--no-legend")
		require.NoError(t, err, out)
		require.Regexp(t, `sleeper\.service\s+[0-9a-f]{7}\s+launched\s+launched\s+[0-9a-f]{8}\.\.\./`, out)

		out, err = c.Fleetctl(ctx, h1, "cat", "sleeper")
		require.NoError(t, err, out)
		require.Contains(t, out, "ExecStart=/bin/sleep infinity")

		out, err = c.Fleetctl(ctx, h1, "status", "sleeper.service")
		require.NoError(t, err, out)
		require.Contains(t, out, "Active: active (running)")

		out, err = c.Fleetctl(ctx, h1, "stop", "sleeper.service")
		require.NoError(t, err, out)
		state, _ := h.Exec(ctx, "systemctl", "is-active", "sleeper.service")
		require.Equal(t, "inactive", strings.TrimSpace(string(state)))

		out, err = c.Fleetctl(ctx, h1, "destroy", "sleeper.service")
		require.NoError(t, err, out)
		require.NoError(t, platform.Wait(ctx, 10*time.Second, func() bool {
			_, err := h.Exec(ctx, "test", "-e", "/run/fleet/units/sleeper.service")
			return err != nil
		}), "the unit file must be removed from the host")
		out, err = c.Fleetctl(ctx, h1, "list-unit-files", "--no-legend")
		require.NoError(t, err, out)
		require.NotContains(t, out, "sleeper.service")
	})

	t.Run("bad input gets a clear error and a non-zero exit", func(t *testing.T) {
		out, err := c.Fleetctl(ctx, h1, "start", "no-such-unit.service")
		require.Error(t, err)
		require.Contains(t, out, "no-such-unit.service")
		writeUnit(t, h1, "broken.service", "[Service\nExecStart=/bin/true\n")
		out, err = c.Fleetctl(ctx, h1, "submit", "/root/broken.service")
		require.Error(t, err)
		require.Contains(t, strings.ToLower(out), "broken.service")
		writeUnit(t, h1, "tmpl@.service", sleeperUnit)
		out, err = c.Fleetctl(ctx, h1, "start", "/root/tmpl@.service")
		require.Error(t, err)
		require.Contains(t, out, "template")
		out, err = c.Fleetctl(ctx, h1, "--endpoint", "http://127.0.0.1:1", "--request-timeout", "1s", "list-units")
		require.Error(t, err)
		require.Contains(t, out, "127.0.0.1:1")
	})

	t.Run("a Docker-wrapped unit runs its container", func(t *testing.T) {
		writeUnit(t, h1, "hello.service", helloUnit)
		out, err := c.Fleetctl(ctx, h1, "start", "/root/hello.service")
		require.NoError(t, err, out)
		h := hostOf(t, ctx, c, "hello.service")
		require.NoError(t, platform.Wait(ctx, 20*time.Second, func() bool {
			out, err := h.Exec(ctx, "docker", "ps", "--format", "{{.Names}}")
			return err == nil && strings.Contains(string(out), "hello-"+h.MachineID)
		}), "container hello-%s must run", h.MachineID)
		out, err = c.Fleetctl(ctx, h1, "destroy", "hello.service")
		require.NoError(t, err, out)
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool {
			out, err := h.Exec(ctx, "docker", "ps", "--format", "{{.Names}}")
			return err == nil && !strings.Contains(string(out), "hello-"+h.MachineID)
		}), "destroying the unit stops its container")
	})

	t.Run("start-to-active latency", func(t *testing.T) {
		var lat []time.Duration
		for i := range 10 {
			name := fmt.Sprintf("lat%d.service", i)
			writeUnit(t, h1, name, sleeperUnit)
			start := time.Now()
			out, err := c.Fleetctl(ctx, h1, "start", "/root/"+name)
			require.NoError(t, err, out)
			lat = append(lat, time.Since(start))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("fleetctl start -> active (10 runs, incl. nsenter+fleetctl process start): p50 %.0f ms, max %.0f ms", ms(lat[4]), ms(lat[9]))
		for i := range 10 {
			out, err := c.Fleetctl(ctx, h1, "destroy", fmt.Sprintf("lat%d.service", i))
			require.NoError(t, err, out)
		}
	})

	t.Run("a restarted fleetd adopts its running units without restarting them", func(t *testing.T) {
		writeUnit(t, h1, "keeper.service", sleeperUnit)
		out, err := c.Fleetctl(ctx, h1, "start", "/root/keeper.service")
		require.NoError(t, err, out)
		h := hostOf(t, ctx, c, "keeper.service")
		pid := mainPID(t, ctx, h, "keeper.service")
		for _, how := range [][]string{{"systemctl", "restart", "fleet.service"}, {"systemctl", "kill", "-s", "KILL", "fleet.service"}} {
			_, err := h.Exec(ctx, how...)
			require.NoError(t, err)
			require.NoError(t, platform.Wait(ctx, 20*time.Second, func() bool {
				out, err := h.Exec(ctx, "systemctl", "is-active", "fleet.service")
				return err == nil && strings.TrimSpace(string(out)) == "active"
			}))
			time.Sleep(2 * time.Second) // let the new agent reconcile
			require.Equal(t, pid, mainPID(t, ctx, h, "keeper.service"), "after %v the unit must not be restarted", how)
			require.Equal(t, h, hostOf(t, ctx, c, "keeper.service"), "after %v the unit must not move", how)
		}
		out, err = c.Fleetctl(ctx, h1, "destroy", "keeper.service")
		require.NoError(t, err, out)
	})

	t.Run("a second fleetd with the same machine ID is refused", func(t *testing.T) {
		h2 := c.Hosts()[1]
		out, err := h2.Exec(ctx, hosts.BinMount+"/fleetd", "-machine_id", h1.MachineID, "-etcd_servers", c.EtcdServers,
			"-api_socket", "/run/fleet-dup.sock", "-api_listen=", "-disable_engine", "true")
		require.Error(t, err)
		require.Contains(t, string(out), "machine ID already in use")
		require.Contains(t, string(out), "host h1 ("+h1.IP+") holds it")
		out2, err := c.Fleetctl(ctx, h1, "list-machines", "--no-legend", "--full")
		require.NoError(t, err)
		require.Regexp(t, h1.MachineID+`\s+`+regexp.QuoteMeta(h1.IP), out2, "the first machine keeps its record")
	})

	t.Run("a dead host's units run elsewhere", func(t *testing.T) {
		writeUnit(t, h1, "mover.service", sleeperUnit)
		out, err := c.Fleetctl(ctx, h1, "start", "/root/mover.service")
		require.NoError(t, err, out)
		victim := hostOf(t, ctx, c, "mover.service")
		var observer *hosts.Host
		for _, h := range c.Hosts() {
			if h != victim {
				observer = h
				break
			}
		}
		require.NoError(t, victim.Kill())
		killed := time.Now()
		var newHost string
		require.NoError(t, platform.Wait(ctx, 30*time.Second, func() bool {
			out, err := c.Fleetctl(ctx, observer, "list-units", "--no-legend", "--full")
			if err != nil {
				return false
			}
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) >= 4 && f[0] == "mover.service" && !strings.HasPrefix(f[1], victim.MachineID) && f[2] == "active" {
					newHost = f[1]
					return true
				}
			}
			return false
		}))
		t.Logf("failover: mover.service active on %s %.2f s after its host was killed (agent_ttl 5 s)", newHost, time.Since(killed).Seconds())
	})
}

func mainPID(t *testing.T, ctx context.Context, h *hosts.Host, name string) string {
	t.Helper()
	out, err := h.Exec(ctx, "systemctl", "show", "-p", "MainPID", "--value", name)
	require.NoError(t, err, string(out))
	pid := strings.TrimSpace(string(out))
	require.NotEqual(t, "0", pid, "%s has no main process", name)
	return pid
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeUnit(t *testing.T, h *hosts.Host, name, body string) {
	t.Helper()
	require.NoError(t, os.WriteFile(h.Path("/root/"+name), []byte(body), 0o644))
}

// hostOf finds the host a unit is placed on, from list-units --full.
func hostOf(t *testing.T, ctx context.Context, c *platform.Cluster, name string) *hosts.Host {
	t.Helper()
	out, err := c.Fleetctl(ctx, c.Hosts()[0], "list-units", "--no-legend", "--full")
	require.NoError(t, err, out)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == name {
			for _, h := range c.Hosts() {
				if strings.HasPrefix(f[1], h.MachineID) {
					return h
				}
			}
		}
	}
	t.Fatalf("unit %s is on no known host; list-units:\n%s", name, out)
	return nil
}

// TestEmbeddedEtcd runs fleet with no etcd configured: fleetd runs an
// embedded etcd, so one host is a working cluster.
func TestEmbeddedEtcd(t *testing.T) {
	c := bootCluster(t, 1, false, map[string]string{"embedded_etcd_client_urls": "http://127.0.0.1:2379"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h1 := c.Hosts()[0]
	conf, err := os.ReadFile(h1.Path("/etc/fleet/fleet.conf"))
	require.NoError(t, err)
	require.NotContains(t, string(conf), "etcd_servers")
	writeUnit(t, h1, "solo.service", sleeperUnit)
	start := time.Now()
	out, err := c.Fleetctl(ctx, h1, "start", "/root/solo.service")
	require.NoError(t, err, out)
	t.Logf("fleetctl start on a fresh one-host cluster: active after %.0f ms", ms(time.Since(start)))
	require.Contains(t, out, "Unit solo.service launched on "+h1.MachineID[:8]+".../"+h1.IP)
	out, err = c.Fleetctl(ctx, h1, "--driver", "etcd", "list-units", "--no-legend")
	require.NoError(t, err, out)
	require.Regexp(t, `solo\.service\s+\S+\s+active\s+running`, out, "the embedded etcd also serves fleetctl's etcd driver on loopback")
}
