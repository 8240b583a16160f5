package fleetd

import (
	"fmt"
	"path/filepath"
	"strings"
)

// systemdUnitDirs are the directories systemd loads units (or drop-ins,
// generated and attached units) from, system and user instances alike. A
// units_directory in one of them, inside one, or above one would let fleet
// overwrite or shadow the host's own units, and its cleanup remove them.
// dist/debian/prerm repeats the list (fleet_owns): keep the two alike.
var systemdUnitDirs = []string{
	"/etc/systemd/system", "/etc/systemd/system.control", "/etc/systemd/system.attached",
	"/run/systemd/system", "/run/systemd/system.control", "/run/systemd/system.attached",
	"/run/systemd/transient", "/run/systemd/generator", "/run/systemd/generator.early", "/run/systemd/generator.late",
	"/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system",
	"/etc/systemd/user", "/run/systemd/user", "/usr/local/lib/systemd/user", "/usr/lib/systemd/user", "/lib/systemd/user",
	"/usr/local/share/systemd/user", "/usr/share/systemd/user",
}

// checkUnitsDirectory refuses a units_directory fleet does not own: systemd's
// unit directories, anything inside them and their parents ("/", "/etc",
// "/usr/lib/systemd"...). Paths are compared cleaned and with symlinks
// resolved as far as they exist, so "/run/fleet/../systemd/system" and a
// link to /etc/systemd/system are caught too.
func checkUnitsDirectory(dir string) error {
	if dir == "" {
		return fmt.Errorf("units_directory is empty: set it to a directory only fleet uses, such as /run/fleet/units")
	}
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("units_directory %q is not an absolute path", dir)
	}
	got := []string{filepath.Clean(dir), resolveExisting(dir)}
	for _, sd := range systemdUnitDirs {
		for _, want := range []string{sd, resolveExisting(sd)} {
			for _, g := range got {
				if g == want || within(g, want) || within(want, g) {
					return fmt.Errorf("units_directory %s is not fleet's to own: it is, contains or lies inside systemd's unit directory %s, whose host units fleet would shadow or remove; use a directory only fleet uses, such as /run/fleet/units", dir, sd)
				}
			}
		}
	}
	return nil
}

// within reports whether path p lies strictly inside dir.
func within(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return strings.HasPrefix(p, dir+"/")
}

// resolveExisting resolves symlinks in the longest existing prefix of the
// clean absolute path p and appends the rest unchanged.
func resolveExisting(p string) string {
	p = filepath.Clean(p)
	rest := ""
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest)
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
