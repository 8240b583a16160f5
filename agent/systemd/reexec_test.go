package systemd

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPrivateSocketReexec: systemd re-executing itself closes every
// connection to its private socket. The Manager dials it again: a job
// queued before is waited for to its end, calls work again, the
// subscription ends (so its owner re-reads) and can be renewed, and
// running units are not restarted. Like TestPrivateSocket it runs inside
// the host.
func TestPrivateSocketReexec(t *testing.T) {
	if os.Getenv(inHostEnv) != "1" {
		runInHost(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := Connect(ctx, Config{UnitsDir: "/run/fleet/test-reexec", Log: log})
	require.NoError(t, err)
	defer m.Close()
	const steady, slow, later = "reexec-steady.service", "reexec-slow.service", "reexec-later.service"
	bodies := map[string]string{
		steady: sleeper,
		slow:   "[Service]\nExecStartPre=/bin/sleep 1\nExecStart=/bin/sleep 1000\n",
		later:  sleeper,
	}
	for n, b := range bodies {
		_, err := m.WriteUnitFile(n, b)
		require.NoError(t, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for n := range bodies {
			_, _ = m.StopUnit(ctx, n)
			_ = m.DisableUnitFiles(ctx, n)
			_ = m.RemoveUnitFile(n)
		}
	}()
	require.NoError(t, m.LinkUnitFiles(ctx, steady, slow, later))
	require.NoError(t, m.Reload(ctx))
	res, err := m.StartUnit(ctx, steady)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	pid := showInHost(t, steady, "MainPID")
	names, err := m.Subscribe(ctx)
	require.NoError(t, err)

	type outcome struct {
		res string
		err error
	}
	slowDone := make(chan outcome, 1)
	go func() {
		res, err := m.StartUnit(ctx, slow)
		slowDone <- outcome{res, err}
	}()
	require.Eventually(t, func() bool { return showInHost(t, slow, "SubState") == "start-pre" }, 5*time.Second, 10*time.Millisecond)

	start := time.Now()
	out, err := exec.CommandContext(ctx, "systemctl", "daemon-reexec").CombinedOutput()
	require.NoError(t, err, "%s", out)
	took := time.Since(start)

	// The subscription ends with the connection.
	ended := time.After(10 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-names:
		case <-ended:
			t.Fatal("subscription did not end after daemon-reexec")
		}
	}
	// Calls made right away wait for systemd and work.
	st, err := m.UnitStates(ctx, steady)
	require.NoError(t, err)
	require.Equal(t, "active", st[steady].ActiveState)
	res, err = m.StartUnit(ctx, later)
	require.NoError(t, err)
	require.Equal(t, "done", res)
	t.Logf("systemctl daemon-reexec took %v; a unit started %v after it began",
		took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	select {
	case o := <-slowDone:
		require.NoError(t, o.err, "the job queued before the re-execution is waited for")
		require.Contains(t, []string{"done", resultUnknown}, o.res)
		t.Logf("start job queued before daemon-reexec: result %q, %v after the re-execution began", o.res, time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("start job queued before daemon-reexec never returned")
	}
	require.Equal(t, "running", showInHost(t, slow, "SubState"))
	require.Equal(t, pid, showInHost(t, steady, "MainPID"), "not restarted")

	// A new subscription gets signals of the new run.
	names, err = m.Subscribe(ctx)
	require.NoError(t, err)
	_, err = m.StopUnit(ctx, later)
	require.NoError(t, err)
	timeout := time.After(5 * time.Second)
	for got := false; !got; {
		select {
		case n, ok := <-names:
			require.True(t, ok)
			got = n == later
		case <-timeout:
			t.Fatal("no signal after daemon-reexec")
		}
	}
}

func showInHost(t *testing.T, unit, prop string) string {
	t.Helper()
	out, err := exec.Command("systemctl", "show", "--value", "-p", prop, unit).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}
