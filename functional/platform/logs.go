package platform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SaveLogs writes the logs of every host the cluster ever had, running or
// killed, into dir: <host>.journal.log (the whole persistent journal, every
// boot, with precise times), <host>.console.log, and each etcd member's
// <member>.etcd.log. It returns the first lines of fleet.service's journal of
// each host too, for a test's own output.
func (c *Cluster) SaveLogs(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var errs []error
	var summary strings.Builder
	for _, h := range c.Hosts() {
		out, err := exec.CommandContext(ctx, "journalctl", "-D", h.JournalDir(), "--no-pager", "-q",
			"-o", "short-precise").CombinedOutput()
		if err != nil {
			errs = append(errs, fmt.Errorf("journal of %s: %w: %s", h.Name, err, out))
		}
		errs = append(errs, os.WriteFile(filepath.Join(dir, h.Name+".journal.log"), out, 0o644))
		errs = append(errs, copyFile(filepath.Join(filepath.Dir(h.JournalDir()), "console.log"),
			filepath.Join(dir, h.Name+".console.log")))
		fleet, _ := exec.CommandContext(ctx, "journalctl", "-D", h.JournalDir(), "--no-pager", "-q",
			"-o", "short-precise", "-u", "fleet.service", "-n", "60").CombinedOutput()
		fmt.Fprintf(&summary, "===== fleet.service on %s (%s), last lines (all in %s):\n%s\n", h.Name, h.IP,
			filepath.Join(dir, h.Name+".journal.log"), fleet)
	}
	for _, m := range c.Etcd() {
		errs = append(errs, copyFile(m.LogPath(), filepath.Join(dir, m.Name+".etcd.log")))
	}
	return summary.String(), errors.Join(errs...)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
