package functional

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// systemdOnTheHost runs what a machine's own systemd does to fleetd on h1:
// systemd re-executing itself (a systemd upgrade), and units of the host's
// own that fleet must not shadow. fleetd talks to systemd over its private
// socket here, as in production. TestEmbeddedEtcd runs it on its one host.
func (e *env) systemdOnTheHost(t *testing.T, h1 *hosts.Host) {
	t.Run("daemon-reexec leaves units running and fleet working", func(t *testing.T) {
		e.scenario(t)
		writeUnit(t, h1, "before.service", sleeperUnit)
		writeUnit(t, h1, "after.service", sleeperUnit)
		e.fleetctl(t, h1, "start", unit("before.service"))
		pid := mainPID(t, e.ctx, h1, "before.service")

		start := time.Now()
		e.sh(t, h1, "systemctl", "daemon-reexec")
		e.fleetctl(t, h1, "start", unit("after.service"))
		figure(t, "daemon-reexec -> next unit active", time.Since(start), "fleetctl start right after systemctl daemon-reexec")
		require.Equal(t, pid, mainPID(t, e.ctx, h1, "before.service"), "not restarted")

		e.fleetctl(t, h1, "stop", "before.service")
		require.Equal(t, "inactive", e.sh(t, h1, "systemctl", "show", "-p", "ActiveState", "--value", "before.service"))
	})

	t.Run("a unit named like one of the host's own is refused", func(t *testing.T) {
		e.scenario(t)
		const own = "hostown.service"
		ownFile := h1.Path("/etc/systemd/system/" + own)
		ownBody := "[Unit]\nDescription=the host's own\n[Service]\nExecStart=/bin/sleep infinity\n"
		require.NoError(t, os.WriteFile(ownFile, []byte(ownBody), 0o644))
		t.Cleanup(func() {
			_, _ = h1.Exec(e.ctx, "systemctl", "stop", own)
			_ = os.Remove(ownFile)
			_, _ = h1.Exec(e.ctx, "systemctl", "daemon-reload")
		})
		e.sh(t, h1, "systemctl", "daemon-reload")
		e.sh(t, h1, "systemctl", "start", own)
		pid := mainPID(t, e.ctx, h1, own)

		writeUnit(t, h1, own, sleeperUnit)
		e.fleetctl(t, h1, "start", "--no-block", unit(own))
		var out string
		require.NoError(t, platform.Wait(e.ctx, 15*time.Second, func() bool {
			out, _ = e.Fleetctl(e.ctx, h1, "list-units", "--no-legend", "--fields=unit,active,sub,reason")
			return len(out) > 0
		}))
		require.Regexp(t, `hostown\.service\s+failed\s+refused\s+refused: this machine has a unit of its own named hostown\.service \(/etc/systemd/system/hostown\.service\)`, out)
		status, _ := e.Fleetctl(e.ctx, h1, "status", own)
		require.Contains(t, status, "fleet does not override it")
		require.NotContains(t, status, "the host's own", "status does not show the host's unit as fleet's")

		require.Equal(t, pid, mainPID(t, e.ctx, h1, own), "the host's unit was not restarted")
		b, err := os.ReadFile(ownFile)
		require.NoError(t, err)
		require.Equal(t, ownBody, string(b))
	})
}
