package fleetd

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoadConfigRebootKeys(t *testing.T) {
	none := func(string) string { return "" }
	c, err := LoadConfig(nil, none)
	require.NoError(t, err)
	require.Equal(t, "/run/reboot-required", c.RebootSentinel)
	require.Equal(t, 1, c.RebootMaxConcurrent)
	require.Equal(t, "systemctl reboot", c.RebootCommand)
	require.Empty(t, c.RebootWindow)

	c, err = LoadConfig([]string{"-reboot_max_concurrent", "2", "-reboot_window", "Mon..Fri 02:00-04:00",
		"-reboot_timeout", "90", "-reboot_drain_deadline", "30s", "-reboot_command", "shutdown -r now"}, none)
	require.NoError(t, err)
	require.Equal(t, 2, c.RebootMaxConcurrent)
	require.Equal(t, "Mon..Fri 02:00-04:00", c.RebootWindow)
	require.Equal(t, 90*time.Second, c.RebootTimeout)
	require.Equal(t, 30*time.Second, c.RebootDrainDeadline)
	require.Equal(t, "shutdown -r now", c.RebootCommand)

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-reboot_max_concurrent", "0"}, "reboot_max_concurrent (from flag -reboot_max_concurrent): must be at least 1"},
		{[]string{"-reboot_window", "Mon..Fry 02:00-04:00"}, `unknown day "fry"`},
		{[]string{"-reboot_timeout", "0"}, "reboot_timeout and reboot_drain_deadline must be positive"},
		{[]string{"-reboot_command", " "}, "reboot_command not empty"},
	} {
		_, err = LoadConfig(tc.args, none)
		require.ErrorIs(t, err, ErrUsage, "%v", tc.args)
		require.ErrorContains(t, err, tc.err)
	}
}
