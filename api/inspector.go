package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// SystemdInspector is the Inspector of the local machine: it runs systemctl
// and journalctl. The zero value uses them from $PATH.
type SystemdInspector struct {
	// Systemctl and Journalctl are the commands to run (default "systemctl"
	// and "journalctl").
	Systemctl, Journalctl string
}

// systemctl status exit codes (LSB): 3 means "not running", which is a state
// to show, not a failure; 4 means systemd does not know the unit.
const (
	statusNotRunning = 3
	statusNoSuchUnit = 4
)

// Status runs `systemctl status --no-pager --full <name>` and returns its
// output, also for inactive or failed units. It blocks until systemctl ends;
// cancelling ctx kills it.
func (i SystemdInspector) Status(ctx context.Context, name string) (string, error) {
	cmd := orDefault(i.Systemctl, "systemctl")
	out, stderr, code, err := run(ctx, cmd, "status", "--no-pager", "--full", "--", name)
	switch {
	case err == nil:
		return out, nil
	case code == statusNotRunning, code > 0 && code != statusNoSuchUnit && out != "":
		return out, nil
	case code == statusNoSuchUnit:
		return "", errorf(ErrConflict, "systemd on this machine does not know unit %s (yet): %s", name, stderr)
	}
	return "", fmt.Errorf("%s status %s: %w%s", cmd, name, err, detail(stderr))
}

// Journal runs `journalctl --no-pager -u <name> -n <lines>` and returns its
// output. It blocks until journalctl ends; cancelling ctx kills it.
func (i SystemdInspector) Journal(ctx context.Context, name string, lines int) (string, error) {
	cmd := orDefault(i.Journalctl, "journalctl")
	out, stderr, _, err := run(ctx, cmd, "--no-pager", "--unit="+name, "--lines="+strconv.Itoa(lines))
	if err != nil {
		return "", fmt.Errorf("%s for unit %s: %w%s", cmd, name, err, detail(stderr))
	}
	return out, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func detail(stderr string) string {
	if stderr == "" {
		return ""
	}
	return ": " + stderr
}

// run runs name with args and returns its stdout, its trimmed stderr and its
// exit code (-1 if it did not exit by itself).
func run(ctx context.Context, name string, args ...string) (stdout, stderr string, code int, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	code = -1
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case ctx.Err() != nil:
		err = ctx.Err()
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	}
	return out.String(), clipText(strings.TrimSpace(errOut.String()), 500), code, err
}
