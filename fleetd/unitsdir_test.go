package fleetd

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckUnitsDirectory(t *testing.T) {
	dir := t.TempDir()
	linkToEtc := filepath.Join(dir, "etc")
	require.NoError(t, os.Symlink("/etc", linkToEtc))
	linkToUnits := filepath.Join(dir, "units")
	require.NoError(t, os.Symlink("/usr/lib/systemd/system", linkToUnits))

	tests := []struct {
		dir string
		ok  bool
	}{
		{"/run/fleet/units", true},
		{"/var/lib/fleet/units", true},
		{"/etc/fleet/units", true},
		{filepath.Join(dir, "own"), true},
		{"/etc/systemd/system", false},
		{"/etc/systemd/system/", false},
		{"/etc/systemd/system/multi-user.target.wants", false}, // inside: would enable units
		{"/run/systemd/system", false},
		{"/run/systemd/transient", false},
		{"/run/systemd/generator.late", false},
		{"/lib/systemd/system", false},
		{"/usr/lib/systemd/system", false},
		{"/usr/local/lib/systemd/system", false},
		{"/etc/systemd/user", false},
		{"/", false},
		{"/etc", false},
		{"/run", false},
		{"/usr", false},
		{"/lib", false},
		{"/usr/lib/systemd", false},
		{"/run/systemd", false},
		{"/run/fleet/../systemd/system", false},    // ".." resolved
		{"//etc/./systemd//system", false},         // cleaned
		{linkToEtc, false},                         // a link to a parent
		{filepath.Join(linkToUnits, "sub"), false}, // inside, through a link
		{"run/fleet/units", false},                 // relative
		{"", false},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			err := checkUnitsDirectory(tc.dir)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), "units_directory")
		})
	}
	_, err := LoadConfig([]string{"-units_directory", "/etc/systemd/system"}, func(string) string { return "" })
	require.ErrorIs(t, err, ErrUsage)
	require.ErrorContains(t, err, "units_directory /etc/systemd/system is not fleet's to own")
	require.ErrorContains(t, err, "use a directory only fleet uses, such as /run/fleet/units")
}
