package functional

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/functional/platform"
	"github.com/seed-a1ce88ea/fleet/internal/debpkg"
	"github.com/seed-a1ce88ea/fleet/internal/hosts"
	"github.com/seed-a1ce88ea/fleet/internal/manpage"
)

// debUnit is the unit started through the installed fleet: nothing but
// systemd needed.
const debUnit = `[Unit]
Description=started by fleet from the Debian package

[Service]
ExecStart=/bin/sleep infinity
`

// TestDebPackage installs fleet as an operator does, from the Debian
// package (internal/debpkg, what make deb builds), on one fresh host
// without the platform's installation: nothing runs after dpkg -i; the
// administrator enables fleet.socket and fleet.service and fleetctl starts a
// unit; an upgrade restarts fleetd and keeps the unit; dpkg -r stops fleetd
// and the unit it started; a purge removes the configuration.
func TestDebPackage(t *testing.T) {
	requireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), suiteTimeout)
	t.Cleanup(cancel)
	require.NoError(t, buildBinaries())
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	v, err := os.ReadFile(filepath.Join(root, "VERSION"))
	require.NoError(t, err)
	out := t.TempDir()
	deb, err := debpkg.Build(ctx, debpkg.Options{Version: strings.TrimSpace(string(v)), BinDir: binDir,
		DistDir: filepath.Join(root, "dist"), OutDir: out, Maintainer: "fleet tests <fleet-tests@example.org>", Date: time.Now()})
	require.NoError(t, err)

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := hosts.Start(ctx, hosts.Config{BinDir: binDir, Log: log}, 1)
	if c != nil {
		t.Cleanup(func() { require.NoError(t, c.Close()) })
	}
	require.NoError(t, err)
	h := c.Host("h1")
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		b, err := h.Exec(ctx, args...)
		require.NoError(t, err)
		return string(b)
	}
	// state is what systemctl says of a unit, "inactive" or worse when it
	// does not run (is-active exits non-zero then: its output is the answer).
	state := func(unit string) string {
		b, _ := h.Exec(ctx, "systemctl", "is-active", unit)
		return strings.TrimSpace(string(b))
	}
	pkg := "/root/" + filepath.Base(deb)
	b, err := os.ReadFile(deb)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(h.Path(pkg), b, 0o644))
	require.NoError(t, os.WriteFile(h.Path("/root/deb-test.service"), []byte(debUnit), 0o644))

	t.Run("dpkg -i installs and starts nothing", func(t *testing.T) {
		run(t, "dpkg", "-i", pkg)
		for _, u := range []string{"fleet.service", "fleet.socket"} {
			require.Equal(t, "inactive", state(u), u)
			enabled, _ := h.Exec(ctx, "systemctl", "is-enabled", u)
			require.Equal(t, "disabled", strings.TrimSpace(string(enabled)), u)
		}
		_, err := h.Exec(ctx, "pgrep", "-x", "fleetd")
		require.Error(t, err, "no fleetd runs after installation")
		require.Contains(t, run(t, "getent", "group", "fleet"), "fleet:x:")
		require.Contains(t, run(t, "dpkg-query", "-W", "-f", "${Conffiles}", "fleet"), "/etc/fleet/fleet.conf")
		require.Contains(t, run(t, "/usr/bin/fleetd", "-version"), "fleetd version "+strings.TrimSpace(string(v)))
	})

	t.Run("man pages and completion are installed", func(t *testing.T) {
		pages := []string{"/usr/share/man/man8/fleetd.8.gz", "/usr/share/man/man5/fleet.conf.5.gz"}
		for _, cmd := range manpage.Commands(manpage.FleetctlCommand("")) {
			pages = append(pages, "/usr/share/man/man1/"+manpage.PageName(cmd)+".gz")
		}
		if _, err := os.Stat(h.Path("/usr/bin/man")); err == nil {
			require.Contains(t, run(t, "man", "-w", "fleetctl"), "/usr/share/man/man1/fleetctl.1.gz")
		}
		for _, p := range pages {
			require.Contains(t, run(t, "sh", "-c", "zcat "+p+" | head -n 1"), ".TH ", p)
		}
		// Sourcing the bash script registers fleetctl's completion.
		require.Contains(t, run(t, "bash", "-c", "source /usr/share/bash-completion/completions/fleetctl && complete -p fleetctl"), "fleetctl")
		for _, p := range []string{"/usr/share/zsh/vendor-completions/_fleetctl", "/usr/share/fish/vendor_completions.d/fleetctl.fish"} {
			_, err := os.Stat(h.Path(p))
			require.NoError(t, err, p)
		}
	})

	t.Run("enabled by the administrator, fleet runs units", func(t *testing.T) {
		// The package's fleet.conf sets nothing: fleetd runs an embedded
		// etcd on loopback. A key of our own shows the file is read.
		conf, err := os.ReadFile(h.Path("/etc/fleet/fleet.conf"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(h.Path("/etc/fleet/fleet.conf"), append(conf, "metadata=installed=deb\n"...), 0o644))
		run(t, "systemctl", "enable", "--now", "fleet.socket", "fleet.service")
		var machines string
		require.NoError(t, platform.Wait(ctx, 60*time.Second, func() bool {
			b, err := h.Exec(ctx, "fleetctl", "list-machines", "--no-legend", "--fields", "machine,metadata")
			machines = string(b)
			return err == nil && strings.Contains(machines, "installed=deb")
		}), "fleetctl list-machines: %s", machines)
		require.Equal(t, "660 root:fleet", strings.TrimSpace(run(t, "stat", "-L", "-c", "%a %U:%G", "/var/run/fleet.sock")))

		require.Contains(t, run(t, "fleetctl", "start", "/root/deb-test.service"), "Unit deb-test.service launched")
		require.Equal(t, "active", state("deb-test.service"))
	})

	t.Run("an upgrade restarts fleetd and keeps its units", func(t *testing.T) {
		fleetd, unit := mainPID(t, ctx, h, "fleet.service"), mainPID(t, ctx, h, "deb-test.service")
		run(t, "dpkg", "-i", pkg)
		require.Equal(t, "active", state("fleet.service"))
		require.NotEqual(t, fleetd, mainPID(t, ctx, h, "fleet.service"), "fleetd runs the new binary")
		require.Equal(t, unit, mainPID(t, ctx, h, "deb-test.service"), "the unit kept running")
	})

	t.Run("dpkg -r stops fleetd and the units it started", func(t *testing.T) {
		run(t, "dpkg", "-r", "fleet")
		for _, u := range []string{"fleet.service", "fleet.socket", "deb-test.service"} {
			require.NotEqual(t, "active", state(u), u)
		}
		_, err := h.Exec(ctx, "pgrep", "-x", "fleetd")
		require.Error(t, err, "no fleetd runs after removal")
		require.Equal(t, "LoadState=not-found", strings.TrimSpace(run(t, "systemctl", "show", "-p", "LoadState", "deb-test.service")),
			"the unit's runtime link is gone")
		_, err = os.Lstat(h.Path("/run/fleet/units/deb-test.service"))
		require.ErrorIs(t, err, os.ErrNotExist)
		_, err = os.Stat(h.Path("/usr/bin/fleetd"))
		require.ErrorIs(t, err, os.ErrNotExist)
		conf, err := os.ReadFile(h.Path("/etc/fleet/fleet.conf"))
		require.NoError(t, err, "removal keeps the configuration")
		require.Contains(t, string(conf), "metadata=installed=deb")
	})

	t.Run("dpkg --purge removes the configuration and fleet's data", func(t *testing.T) {
		run(t, "dpkg", "--purge", "fleet")
		for _, p := range []string{"/etc/fleet/fleet.conf", "/var/lib/fleet", "/etc/systemd/system/multi-user.target.wants/fleet.service",
			"/etc/systemd/system/sockets.target.wants/fleet.socket"} {
			_, err := os.Lstat(h.Path(p))
			require.ErrorIs(t, err, os.ErrNotExist, p)
		}
		_, err := h.Exec(ctx, "dpkg-query", "-W", "fleet")
		require.Error(t, err, "dpkg knows no fleet package any more")
	})
}
