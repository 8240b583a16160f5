package reboot

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestDueOnlyWhenSomethingMayHaveChanged: an idle machine's tick reads
// nothing from etcd; a watch event, its sentinel, a slot it holds or waits
// for, or another holder's passed deadline make it look.
func TestDueOnlyWhenSomethingMayHaveChanged(t *testing.T) {
	now := time.Now()
	sentinel := filepath.Join(t.TempDir(), "reboot-required")
	c := &Coordinator{cfg: Config{Machine: "m1", Sentinel: sentinel}}
	require.False(t, c.due(now), "idle")

	c.stale = true
	require.True(t, c.due(now), "a watch said the slots or requests changed")
	c.stale = false

	require.NoError(t, os.WriteFile(sentinel, nil, 0o644))
	require.True(t, c.due(now), "sentinel present")
	require.NoError(t, os.Remove(sentinel))

	c.holders = map[string]registry.RebootHolder{"m2": {Machine: "m2", Deadline: now.Add(time.Minute)}}
	require.False(t, c.due(now), "another machine reboots within its deadline")
	require.True(t, c.due(now.Add(2*time.Minute)), "its deadline passed: release its slot")

	c.holders["m1"] = registry.RebootHolder{Machine: "m1", Deadline: now.Add(time.Minute)}
	require.True(t, c.due(now), "this machine holds a slot")
	delete(c.holders, "m1")

	c.queued = true
	require.True(t, c.due(now), "this machine waits for a slot")
	c.queued = false
	c.failedUntil = now.Add(time.Minute)
	require.True(t, c.due(now), "a failed reboot's back-off")
}
