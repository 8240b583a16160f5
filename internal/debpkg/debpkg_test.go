package debpkg

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/seed-a1ce88ea/fleet/internal/manpage"
)

func TestDebianVersion(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"release", "0.2.0", "0.2.0"},
		{"release with build metadata", "0.2.0+build.5", "0.2.0+build.5"},
		{"development build", "0.2.0-dev+v0.1.0-5-g3146401-dirty", "0.2.0~dev+v0.1.0.5.g3146401.dirty"},
		{"pre-release", "1.0.0-rc.1", "1.0.0~rc.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DebianVersion(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	for _, bad := range []string{"dev", "3146401", "v0.2.0", "0.2", ""} {
		_, err := DebianVersion(bad)
		require.ErrorIs(t, err, ErrBadVersion, bad)
	}
}

// TestDevelopmentBuildsSortBeforeTheirRelease asks dpkg itself, which is
// what apt upgrades by.
func TestDevelopmentBuildsSortBeforeTheirRelease(t *testing.T) {
	dpkg := requireTool(t, "dpkg")
	dev, err := DebianVersion("0.2.0-dev+v0.1.0-5-g3146401")
	require.NoError(t, err)
	for _, c := range [][3]string{{"0.1.0", "lt", dev}, {dev, "lt", "0.2.0"}, {"0.2.0", "lt", "0.2.1"}} {
		require.NoError(t, exec.Command(dpkg, "--compare-versions", c[0], c[1], c[2]).Run(), "%s %s %s", c[0], c[1], c[2])
	}
}

// TestBuild builds a package from stand-in binaries and reads it back with
// dpkg-deb: every file in its place with its mode, the conffile, and the
// control fields.
func TestBuild(t *testing.T) {
	dpkgDeb := requireTool(t, "dpkg-deb")
	bin, out := t.TempDir(), t.TempDir()
	for _, name := range []string{"fleetd", "fleetctl"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755))
	}
	date := time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC)
	deb, err := Build(context.Background(), Options{Version: "1.2.3-dev+g1a2b3c4", BinDir: bin, DistDir: "../../dist",
		OutDir: out, Maintainer: "fleet tests <fleet-tests@example.org>", Date: date})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(out, "fleet_1.2.3~dev+g1a2b3c4_amd64.deb"), deb)

	b, err := exec.Command(dpkgDeb, "--contents", deb).CombinedOutput()
	require.NoError(t, err, string(b))
	files := map[string]string{} // path -> "mode owner"
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		require.GreaterOrEqual(t, len(f), 6, l)
		require.Equal(t, "root/root", f[1], l)
		require.Equal(t, "2026-12-05", f[3], "every file has the package's date: %s", l)
		files[strings.TrimPrefix(f[5], ".")] = f[0]
	}
	want := map[string]string{
		"/usr/bin/fleetd":                                     "-rwxr-xr-x",
		"/usr/bin/fleetctl":                                   "-rwxr-xr-x",
		"/lib/systemd/system/fleet.service":                   "-rw-r--r--",
		"/lib/systemd/system/fleet.socket":                    "-rw-r--r--",
		"/lib/systemd/system/fleet.socket.d/fleet-group.conf": "-rw-r--r--",
		"/etc/fleet/fleet.conf":                               "-rw-r--r--",
		"/usr/share/doc/fleet/copyright":                      "-rw-r--r--",
		"/usr/share/doc/fleet/changelog.gz":                   "-rw-r--r--",
		"/usr/share/bash-completion/completions/fleetctl":     "-rw-r--r--",
		"/usr/share/zsh/vendor-completions/_fleetctl":         "-rw-r--r--",
		"/usr/share/fish/vendor_completions.d/fleetctl.fish":  "-rw-r--r--",
		"/usr/share/man/man8/fleetd.8.gz":                     "-rw-r--r--",
		"/usr/share/man/man5/fleet.conf.5.gz":                 "-rw-r--r--",
		"/usr/share/lintian/overrides/fleet":                  "-rw-r--r--",
		"/":                                                   "drwxr-xr-x",
	}
	for _, c := range manpage.Commands(manpage.FleetctlCommand("")) {
		want["/usr/share/man/man1/"+manpage.PageName(c)+".gz"] = "-rw-r--r--"
	}
	for p, mode := range want {
		require.Equal(t, mode, files[p], p)
	}

	field := func(name string) string {
		b, err := exec.Command(dpkgDeb, "--field", deb, name).CombinedOutput()
		require.NoError(t, err, string(b))
		return strings.TrimSpace(string(b))
	}
	require.Equal(t, "fleet", field("Package"))
	require.Equal(t, "1.2.3~dev+g1a2b3c4", field("Version"))
	require.Equal(t, "amd64", field("Architecture"))
	require.Equal(t, "fleet tests <fleet-tests@example.org>", field("Maintainer"))

	ctl := t.TempDir()
	b, err = exec.Command(dpkgDeb, "--control", deb, ctl).CombinedOutput()
	require.NoError(t, err, string(b))
	conffiles, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
	require.NoError(t, err)
	require.Equal(t, "/etc/fleet/fleet.conf\n", string(conffiles))
	sums, err := os.ReadFile(filepath.Join(ctl, "md5sums"))
	require.NoError(t, err)
	require.Contains(t, string(sums), "  usr/bin/fleetd\n")
	require.NotContains(t, string(sums), "etc/fleet", "dpkg keeps conffiles' sums itself")
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		info, err := os.Stat(filepath.Join(ctl, script))
		require.NoError(t, err, script)
		require.Equal(t, os.FileMode(0o755), info.Mode().Perm(), script)
		b, err := exec.Command("sh", "-n", filepath.Join(ctl, script)).CombinedOutput()
		require.NoError(t, err, "%s: %s", script, b)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	_, err := Build(context.Background(), Options{Version: "dev", Maintainer: "x <x@example.org>"})
	require.ErrorIs(t, err, ErrBadVersion)
	_, err = Build(context.Background(), Options{Version: "1.0.0"})
	require.ErrorContains(t, err, "no maintainer")
	_, err = Build(context.Background(), Options{Version: "1.0.0", Maintainer: "x <x@example.org>", BinDir: t.TempDir(), DistDir: "../../dist", OutDir: t.TempDir()})
	require.ErrorContains(t, err, "make build")
}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is needed (Debian package dpkg)", name)
	}
	t.Skipf("no %s", name)
	return ""
}
