package systemd

import (
	"fmt"
	"path"
	"strings"
)

// searchPath is systemd's system unit search path (systemd-analyze
// unit-paths), with the distribution's /lib and /usr/lib.
var searchPath = []string{
	"/etc/systemd/system.control", "/run/systemd/system.control", "/run/systemd/transient",
	"/run/systemd/generator.early", "/etc/systemd/system", "/etc/systemd/system.attached",
	"/run/systemd/system", "/run/systemd/system.attached", "/run/systemd/generator",
	"/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system",
	"/run/systemd/generator.late",
}

// checkUnitsDir refuses a units directory that fleet cannot own: one of
// systemd's own unit directories, or a directory above one (/, /etc,
// /run/systemd...). Fleet removes the files of its directory that are not
// scheduled, and systemd would load the files of a directory of its search
// path whether fleet links them or not.
func checkUnitsDir(dir string) error {
	if !path.IsAbs(dir) {
		return fmt.Errorf("units directory %q is not an absolute path", dir)
	}
	dir = path.Clean(dir)
	for _, p := range searchPath {
		if p == dir || dir == "/" || strings.HasPrefix(p, dir+"/") {
			return fmt.Errorf("units directory %s is or holds systemd's unit directory %s: fleet needs a directory of its own, such as %s",
				dir, p, DefaultUnitsDir)
		}
	}
	return nil
}
