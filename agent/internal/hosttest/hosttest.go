// Package hosttest boots the one simulated host (a systemd-nspawn container
// running a real systemd, see internal/hosts) that a test package of the
// agent drives, and checks for goroutine leaks when the package's tests end.
//
// It leaves the tests to use the host: it hands out the host, not a
// connection to its systemd.
package hosttest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// bootTimeout covers building the root file system the first time (about
// 40 s) and waiting for another package's cluster to close (hosts allows one
// per machine).
const bootTimeout = 10 * time.Minute

var (
	host *hosts.Host
	// skip says why there is no host, outside CI.
	skip string
)

// Main runs a test package's tests with one booted host, then closes it and
// fails the package if goroutines leaked. Call it from TestMain; it exits.
//
// Without root or systemd-nspawn the tests that need the host are skipped,
// unless CI=true: CI must run them, so Main fails instead.
func Main(m *testing.M, leakOpts ...goleak.Option) {
	os.Exit(run(m, leakOpts))
}

func run(m *testing.M, leakOpts []goleak.Option) int {
	if why := missing(); why != "" {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "simulated hosts need %s, and CI=true\n", why)
			return 1
		}
		skip = "simulated hosts need " + why
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := time.Now()
	c, err := hosts.Start(ctx, hosts.Config{Log: log}, 1)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "boot a host: %v\n", err)
		return 1
	}
	host = c.Hosts()[0]
	fmt.Fprintf(os.Stderr, "booted host %s (machine ID %s) in %v\n", host.Name, host.MachineID, time.Since(start).Round(time.Millisecond))
	code := m.Run()
	if code != 0 {
		jctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fmt.Fprintf(os.Stderr, "journal of %s (last lines):\n%s\n", host.Name, tail(host.Journal(jctx), 200))
		cancel()
	}
	if err := c.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "close hosts: %v\n", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(leakOpts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	return code
}

func missing() string {
	if os.Geteuid() != 0 {
		return "root"
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		return "systemd-nspawn (apt-get install systemd-container)"
	}
	return ""
}

// Host returns the package's host, or skips t when there is none.
func Host(t testing.TB) *hosts.Host {
	t.Helper()
	if host == nil {
		t.Skip(skip)
	}
	return host
}

func tail(s string, lines int) string {
	n := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			n++
			if n > lines {
				return s[i+1:]
			}
		}
	}
	return s
}
