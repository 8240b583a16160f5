package agent_test

import (
	"context"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/registry"
)

// TestHostUnitIsRefused: a scheduled unit whose name is a unit of the
// host's own is neither written, linked, started nor stopped; the host's
// unit runs on untouched and the published state says why.
func TestHostUnitIsRefused(t *testing.T) {
	e := newEnv(t)
	// The host's own units: one in /etc/systemd/system, enabled and
	// running, and dbus.service from the distribution's /lib, which runs
	// the host's bus.
	const own, dist = "hostown.service", "dbus.service"
	ownFile := e.h.Path("/etc/systemd/system/" + own)
	ownBody := "[Unit]\nDescription=the host's own unit\n\n[Service]\nExecStart=/bin/sleep 2000\n\n[Install]\nWantedBy=multi-user.target\n"
	require.NoError(t, os.WriteFile(ownFile, []byte(ownBody), 0o644))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = e.h.Exec(ctx, "systemctl", "disable", "--now", own)
		_ = os.Remove(ownFile)
		_, _ = e.h.Exec(ctx, "systemctl", "daemon-reload")
	})
	e.systemctl("daemon-reload")
	e.systemctl("enable", "--now", own)
	ownPID, distPID := e.show(own, "MainPID"), e.show(dist, "MainPID")
	require.NotEqual(t, "0", ownPID)
	require.NotEqual(t, "0", distPID)

	e.startAgent()
	hOwn, _ := e.schedule(own, unit("1000"), registry.StateLaunched)
	hDist, _ := e.schedule(dist, unit("1001"), registry.StateLaunched)
	refused := func(p published) bool { return !p.Deleted && p.SubState == "refused" }
	p := e.states.wait(own, 0, refused)
	t.Logf("published for %s: %+v", own, p.UnitState)
	require.Equal(t, hOwn, p.Hash)
	require.Equal(t, "error", p.LoadState)
	require.Equal(t, "failed", p.ActiveState)
	require.Contains(t, p.Reason, "/etc/systemd/system/"+own)
	p = e.states.wait(dist, 0, refused)
	t.Logf("published for %s: %+v", dist, p.UnitState)
	require.Equal(t, hDist, p.Hash)
	require.Contains(t, p.Reason, "/systemd/system/"+dist)
	require.NotContains(t, p.Reason, e.sd.UnitsDir())

	// A unit of fleet's scheduled after them runs: the refused ones were
	// dealt with (in an earlier or the same batch) by the time it is
	// published.
	hm, _ := e.schedule("marker.service", unit("1002"), registry.StateLaunched)
	e.states.waitActive("marker.service", hm, "active", "running", 0)
	time.Sleep(300 * time.Millisecond)

	assertUntouched := func() {
		t.Helper()
		require.Equal(t, ownPID, e.show(own, "MainPID"), "the host's unit was not restarted")
		require.Equal(t, "active", e.show(own, "ActiveState"))
		require.Equal(t, "/etc/systemd/system/"+own, e.show(own, "FragmentPath"))
		out, err := e.h.Exec(context.Background(), "systemctl", "is-enabled", own)
		require.NoError(t, err)
		require.Equal(t, "enabled", strings.TrimSpace(string(out)))
		b, err := os.ReadFile(ownFile)
		require.NoError(t, err)
		require.Equal(t, ownBody, string(b), "the host's unit file is unchanged")
		require.Equal(t, distPID, e.show(dist, "MainPID"))
		require.Equal(t, "active", e.show(dist, "ActiveState"))
		for _, n := range []string{own, dist} {
			_, err := e.sd.ReadUnitFile(n)
			require.ErrorIs(t, err, fs.ErrNotExist, "fleet wrote no file for %s", n)
			_, err = os.Lstat(e.h.Path("/run/systemd/system/" + n))
			require.ErrorIs(t, err, fs.ErrNotExist, "fleet linked nothing for %s", n)
		}
	}
	assertUntouched()
	states, err := e.reg.States(context.Background(), e.m.ID)
	require.NoError(t, err)
	for _, s := range states {
		if s.Name == own || s.Name == dist {
			require.NotEmpty(t, s.Reason, "the reason is in etcd for %s", s.Name)
		}
	}

	// Unscheduled: the refused state goes, the host's units stay.
	n := e.states.count(own)
	e.unschedule(own)
	e.unschedule(dist)
	e.states.wait(own, n, func(p published) bool { return p.Deleted })
	e.states.wait(dist, 0, func(p published) bool { return p.Deleted })
	time.Sleep(300 * time.Millisecond)
	assertUntouched()

	// Once the host's unit is gone, fleet runs its unit of that name.
	e.systemctl("disable", "--now", own)
	require.NoError(t, os.Remove(ownFile))
	e.systemctl("daemon-reload")
	hOwn, _ = e.schedule(own, unit("1003"), registry.StateLaunched)
	e.states.waitActive(own, hOwn, "active", "running", 0)
	require.Contains(t, e.show(own, "ExecStart"), "/bin/sleep 1003")
	target, err := os.Readlink(e.h.Path(e.show(own, "FragmentPath")))
	require.NoError(t, err, "systemd loads fleet's link")
	require.Equal(t, e.sd.UnitsDir()+"/"+own, target)
}
