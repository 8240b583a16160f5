package fleetd

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/seed-a1ce88ea/fleet/reboot"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// bootIDFile is the kernel's ID of the running boot; systemd-nspawn gives
// each boot of a container its own.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// newRebootCoordinator builds this machine's reboot coordinator from the
// reboot_* keys.
func newRebootCoordinator(reg *registry.Registry, machineID string, cfg Config, log *slog.Logger) (*reboot.Coordinator, error) {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return nil, fmt.Errorf("boot ID for coordinated reboots: %w", err)
	}
	w, err := reboot.ParseWindow(cfg.RebootWindow)
	if err != nil {
		return nil, fmt.Errorf("%w: reboot_window: %w", ErrUsage, err)
	}
	return reboot.New(reboot.Config{Registry: reg, Machine: machineID, BootID: strings.TrimSpace(string(b)),
		Sentinel: cfg.RebootSentinel, MaxConcurrent: cfg.RebootMaxConcurrent, Window: w, Command: cfg.RebootCommand,
		Timeout: cfg.RebootTimeout, DrainDeadline: cfg.RebootDrainDeadline, Log: log})
}
