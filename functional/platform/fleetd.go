package platform

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/seed-a1ce88ea/fleet/internal/hosts"
)

// fleetdTimeout bounds the wait for fleet.service to settle after a change.
const fleetdTimeout = 30 * time.Second

// The life cycle of fleetd in a host, through the host's systemd as an
// operator drives it. fleet.socket stays up throughout: a connection to
// /var/run/fleet.sock (fleetctl run in that host, say) starts a stopped
// fleet.service again. Tests that keep fleetd down use another host's
// fleetctl or API.

// StopFleet stops fleetd gracefully (systemctl stop fleet.service: SIGTERM)
// and waits until it is inactive. fleetd then leaves its machine lease to
// expire (agent_ttl) and its units running: a fleetd started again within
// the TTL adopts the lease and nothing moves.
func (c *Cluster) StopFleet(ctx context.Context, h *hosts.Host) error {
	if _, err := h.Exec(ctx, "systemctl", "stop", "fleet.service"); err != nil {
		return fmt.Errorf("stop fleetd: %w", err)
	}
	return waitFleetState(ctx, h, "inactive")
}

// StartFleet starts fleetd (systemctl start fleet.service) and waits until
// systemd says it is active.
func (c *Cluster) StartFleet(ctx context.Context, h *hosts.Host) error {
	if _, err := h.Exec(ctx, "systemctl", "start", "fleet.service"); err != nil {
		return fmt.Errorf("start fleetd: %w", err)
	}
	return waitFleetState(ctx, h, "active")
}

// RestartFleet restarts fleetd gracefully (systemctl restart fleet.service)
// and waits until it is active again.
func (c *Cluster) RestartFleet(ctx context.Context, h *hosts.Host) error {
	if _, err := h.Exec(ctx, "systemctl", "restart", "fleet.service"); err != nil {
		return fmt.Errorf("restart fleetd: %w", err)
	}
	return waitFleetState(ctx, h, "active")
}

// KillFleet crashes fleetd (SIGKILL to every process of fleet.service) and
// waits until systemd has restarted it (Restart=always, RestartSec=1s).
func (c *Cluster) KillFleet(ctx context.Context, h *hosts.Host) error {
	before, err := FleetdPID(ctx, h)
	if err != nil {
		return err
	}
	if _, err := h.Exec(ctx, "systemctl", "kill", "-s", "KILL", "fleet.service"); err != nil {
		return fmt.Errorf("kill fleetd: %w", err)
	}
	var last string
	err = Wait(ctx, fleetdTimeout, func() bool {
		pid, err := FleetdPID(ctx, h)
		last = pid
		return err == nil && pid != "0" && pid != before
	})
	if err != nil {
		return fmt.Errorf("fleetd on %s not restarted after a crash (main PID %s, was %s): %w", h.Name, last, before, err)
	}
	return waitFleetState(ctx, h, "active")
}

// ReloadFleet sends SIGHUP to fleetd's main process, as `systemctl reload`
// would with ExecReload=/bin/kill -HUP $MAINPID: fleetd reads its
// configuration again.
func (c *Cluster) ReloadFleet(ctx context.Context, h *hosts.Host) error {
	if _, err := h.Exec(ctx, "systemctl", "kill", "-s", "HUP", "--kill-who=main", "fleet.service"); err != nil {
		return fmt.Errorf("reload fleetd: %w", err)
	}
	return nil
}

// FleetdPID returns the main PID of fleet.service in h ("0" when it does
// not run).
func FleetdPID(ctx context.Context, h *hosts.Host) (string, error) {
	out, err := h.Exec(ctx, "systemctl", "show", "-p", "MainPID", "--value", "fleet.service")
	if err != nil {
		return "", err
	}
	pid := strings.TrimSpace(string(out))
	if _, err := strconv.Atoi(pid); err != nil {
		return "", fmt.Errorf("main PID of fleet.service on %s: %q", h.Name, pid)
	}
	return pid, nil
}

func waitFleetState(ctx context.Context, h *hosts.Host, want string) error {
	var last string
	err := Wait(ctx, fleetdTimeout, func() bool {
		out, _ := h.Exec(ctx, "systemctl", "is-active", "fleet.service") // non-zero unless active
		last = strings.TrimSpace(string(out))
		return last == want
	})
	if err != nil {
		return fmt.Errorf("fleet.service on %s is %q, want %q: %w", h.Name, last, want, err)
	}
	return nil
}
