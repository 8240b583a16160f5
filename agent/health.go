package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// Health checks ([X-Fleet] HealthCheck=): the agent runs each scheduled,
// launched unit's check on this machine every healthInterval and publishes
// the result with the unit's state (UnitState.Health) while the unit is
// active. The engine leader's rollouts read it (engine/rollout.go).

const (
	healthInterval = time.Second
	// healthTimeout bounds one check: a command or a request that hangs
	// fails.
	healthTimeout = 5 * time.Second
)

// healthChecks holds the checks of this machine's units and their last
// results. The worker registers checks as it reads bodies; the checker
// goroutine runs them.
type healthChecks struct {
	mu     sync.Mutex
	checks map[string]healthCheck // by unit
}

type healthCheck struct {
	hash   string // the body the check comes from
	check  string
	result string // "" until it ran for this body
}

// noteHealthCheck records the check of it's unit as its body (hash) says;
// a body without one forgets it.
func (a *Agent) noteHealthCheck(it *item, hash, body string) {
	name := it.name
	h := &a.health
	h.mu.Lock()
	cur, ok := h.checks[name]
	h.mu.Unlock()
	if ok && cur.hash == hash {
		return
	}
	check := ""
	if f, err := it.parse(body); err == nil {
		if p, err := f.UpdatePolicy(name); err == nil {
			check = p.HealthCheck
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checks == nil {
		h.checks = map[string]healthCheck{}
	}
	if check == "" {
		delete(h.checks, name)
		return
	}
	h.checks[name] = healthCheck{hash: hash, check: check}
}

// healthOf returns the result to publish for unit name running body hash
// in state st: the last result of its check for that body while it is
// active, "" otherwise.
func (a *Agent) healthOf(name, hash, activeState string) string {
	if activeState != "active" {
		return ""
	}
	a.health.mu.Lock()
	defer a.health.mu.Unlock()
	c, ok := a.health.checks[name]
	if !ok || c.hash != hash {
		return ""
	}
	return c.result
}

// runHealthChecks runs the checks of launched units scheduled here every
// healthInterval until ctx ends, and queues a unit whose result changed so
// the worker publishes it.
func (a *Agent) runHealthChecks(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.health.mu.Lock()
		todo := make(map[string]healthCheck, len(a.health.checks))
		for name, c := range a.health.checks {
			if p, ok := a.placement(name); ok && p.Hash == c.hash && p.DesiredState == registry.StateLaunched {
				todo[name] = c
			} else if !ok {
				delete(a.health.checks, name)
			}
		}
		a.health.mu.Unlock()
		for name, c := range todo {
			res := runHealthCheck(ctx, c.check)
			if ctx.Err() != nil {
				return
			}
			a.health.mu.Lock()
			cur, ok := a.health.checks[name]
			changed := ok && cur.hash == c.hash && cur.result != res
			if changed {
				cur.result = res
				a.health.checks[name] = cur
			}
			a.health.mu.Unlock()
			if changed {
				a.log.Info("health check", "unit", name, "result", res)
				a.queue.add(name)
			}
		}
	}
}

// runHealthCheck runs one check: an http(s) URL must answer 2xx, a command
// (sh -c) must exit 0. The failure text is short and stable, so a check
// that keeps failing the same way is published once.
func runHealthCheck(ctx context.Context, check string) string {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	if (unit.UpdatePolicy{HealthCheck: check}).HealthCheckIsURL() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, check, nil)
		if err != nil {
			return registry.HealthFail + ": bad URL"
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return registry.HealthFail + ": no answer within " + healthTimeout.String()
			}
			return registry.HealthFail + ": request failed"
		}
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Sprintf("%s: HTTP %d", registry.HealthFail, resp.StatusCode)
		}
		return registry.HealthPass
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", check)
	// Its own process group, killed whole at the timeout: killing only the
	// shell would leave what it started (a hung curl, say) running, one
	// more every healthInterval.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return registry.HealthPass
	case ctx.Err() != nil:
		return registry.HealthFail + ": did not end within " + healthTimeout.String()
	case errors.As(err, &exit):
		return fmt.Sprintf("%s: exit status %d", registry.HealthFail, exit.ExitCode())
	}
	return registry.HealthFail + ": could not run"
}
