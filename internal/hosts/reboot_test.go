package hosts_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRebootFromInside: a host whose systemd reboots (systemctl reboot) boots again by itself with a
// new boot ID, keeping what it wrote and the units it enabled; Restart still reimages it.
func TestRebootFromInside(t *testing.T) {
	requireHosts(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c := startCluster(t, ctx, testConfig(t), 1)
	h := c.Host("h1")
	require.Equal(t, 1, h.Boots())
	bootID := exec1(t, ctx, h, "cat", "/proc/sys/kernel/random/boot_id")
	exec1(t, ctx, h, "sh", "-c", "echo kept > /etc/kept && printf '[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/kept.service && systemctl enable kept.service")

	_, _ = h.Exec(ctx, "systemctl", "reboot") // the host may go before it answers
	require.Eventually(t, func() bool {
		if h.Boots() != 2 || h.Leader() == 0 {
			return false
		}
		out, err := h.Exec(ctx, "systemctl", "is-active", "kept.service")
		return err == nil && strings.TrimSpace(string(out)) == "active"
	}, 2*time.Minute, 100*time.Millisecond, "h1 boots again by itself and starts the unit it enabled")
	require.NotEqual(t, bootID, exec1(t, ctx, h, "cat", "/proc/sys/kernel/random/boot_id"))
	require.Equal(t, "kept", exec1(t, ctx, h, "cat", "/etc/kept"), "a reboot keeps the disk")

	require.NoError(t, h.Restart(ctx))
	require.Equal(t, 3, h.Boots())
	_, err := h.Exec(ctx, "cat", "/etc/kept")
	require.Error(t, err, "Restart boots the pristine root file system")

	// A host stopped while it reboots stays down.
	_, _ = h.Exec(ctx, "systemctl", "reboot")
	require.Eventually(t, func() bool { return h.Leader() == 0 }, time.Minute, 10*time.Millisecond)
	require.NoError(t, h.Stop(ctx))
	require.Zero(t, h.Leader(), "Stop waits for a boot under way, and no boot follows it")
}
