package systemd

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// HostUnit reports whether systemd has name as a unit of the host's own,
// that fleet must not shadow: a unit systemd loads from a file outside
// UnitsDir (/etc/systemd/system/x.service, /lib/systemd/system/ssh.service,
// a generator's output), a masked unit, or one systemd holds without a file
// (init.scope, a transient unit). It returns where the unit comes from, for
// people ("/lib/systemd/system/ssh.service", "masked by
// /etc/systemd/system/x.service"), or "" when name is free for fleet:
// systemd finds no file for it, or the file is fleet's own, in UnitsDir
// (linked there by this or an earlier fleetd).
//
// systemd answers, not a scan of its search path: it knows its search path,
// its order (/etc before /run before /lib) and the units it holds in memory.
// Asking loads a unit that is not in memory, and systemd looks on disk
// again for a unit it holds as not-found when its search path changed, so a
// file placed since is found.
func (m *Manager) HostUnit(ctx context.Context, name string) (string, error) {
	if _, err := m.filePath(name); err != nil {
		return "", fmt.Errorf("look for host unit: %w", err)
	}
	// Two properties, not the Unit interface's hundred-odd: LoadState,
	// and FragmentPath only when systemd found something.
	load, err := m.unitProperty(ctx, name, "LoadState")
	if err != nil || load == "not-found" {
		return "", err
	}
	frag, err := m.unitProperty(ctx, name, "FragmentPath")
	if err != nil {
		return "", err
	}
	switch {
	case frag != "" && m.fleets(frag):
		return "", nil
	case load == "masked" && frag != "":
		return "masked by " + frag, nil
	case load == "masked":
		return "masked", nil
	case frag != "":
		return frag, nil
	case load == "loaded":
		return "held by systemd without a unit file", nil
	}
	// Not loadable for another reason (bad-setting, error) and without a
	// file: nothing of the host's to shadow.
	return "", nil
}

// unitProperty reads one string property of name's Unit interface.
func (m *Manager) unitProperty(ctx context.Context, name, prop string) (string, error) {
	var p *sddbus.Property
	err := m.call(ctx, func(c *sddbus.Conn) error {
		var err error
		p, err = c.GetUnitPropertyContext(ctx, name, prop)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("look for host unit %s: %w", name, wrapDBus(err))
	}
	v, _ := p.Value.Value().(string)
	return v, nil
}

// fleets reports whether frag, a unit file path as systemd sees it, is
// fleet's own: in UnitsDir, or a link to a file there (systemd reports a
// linked unit by its target, but read the link to be sure).
func (m *Manager) fleets(frag string) bool {
	if path.Dir(frag) == m.unitsDir {
		return true
	}
	target, err := os.Readlink(filepath.Join(m.fsRoot, filepath.FromSlash(frag)))
	return err == nil && path.IsAbs(target) && path.Dir(path.Clean(target)) == m.unitsDir
}
