package debpkg

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPrermLeavesForeignUnitsDirectory runs dist/debian/prerm in a mount
// namespace whose /etc and /run are fresh tmpfs: a fleet.conf naming
// systemd's own unit directory (which fleetd refuses) must not make the
// package's removal delete the host's units; fleet's own directory is
// emptied.
func TestPrermLeavesForeignUnitsDirectory(t *testing.T) {
	unshare := requireTool(t, "unshare")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("root is needed to run prerm in a mount namespace")
		}
		t.Skip("needs root for a mount namespace")
	}
	prerm, err := filepath.Abs("../../dist/debian/prerm")
	require.NoError(t, err)
	tmp := t.TempDir()
	bin, own := filepath.Join(tmp, "bin"), filepath.Join(tmp, "units")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	require.NoError(t, os.MkdirAll(own, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(own, "web.service"), []byte("[Service]\n"), 0o644))
	for _, stub := range []string{"deb-systemd-invoke", "systemctl"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, stub), []byte("#!/bin/sh\nexit 0\n"), 0o755))
	}
	const script = `set -e
mount -t tmpfs tmpfs /etc
mount -t tmpfs tmpfs /run
mkdir -p /etc/fleet /etc/systemd/system /run/systemd/system
echo host > /etc/systemd/system/host.service
for dir in /etc/systemd/system /etc/systemd /run/fleet/../../etc/systemd/system /; do
	printf 'units_directory=%s\n' "$dir" > /etc/fleet/fleet.conf
	sh "$PRERM" remove
	test -e /etc/systemd/system/host.service || { echo "units_directory=$dir: host.service deleted"; exit 3; }
done
printf 'units_directory = "%s"\n' "$OWN" > /etc/fleet/fleet.conf
sh "$PRERM" remove
test ! -e "$OWN/web.service" || { echo "fleet's web.service kept"; exit 4; }
`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "PRERM="+prerm, "OWN="+own)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "units_directory /etc/systemd/system is not fleet's own")
}
