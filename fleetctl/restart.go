package fleetctl

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/registry"
)

func (a *app) restartCommand() *cobra.Command {
	var attempts int
	cmd := &cobra.Command{
		Use:   "restart [--block-attempts=N] UNIT...",
		Short: "Restart one or more units in the cluster, one at a time",
		Long: `Restart one or more units in the cluster, one after the other: each unit is
stopped, and started again, and fleetctl waits for it to be active before
it restarts the next one. systemd on each unit's machine stops and starts
it, honouring ExecStop= and the like. A loaded but stopped unit is started.

A unit that fails to start stops the rolling restart: the units after it
are left running as they were.

Restart a single unit:
	fleetctl restart foo.service

Restart every instance of a template, one at a time:
	fleetctl restart 'web@*'`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: a.completeUnits(false),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			names, err := a.unitArgs(ctx, c, args)
			if err != nil {
				return err
			}
			if _, err := refuseUnloaded(ctx, c, names, "restart", "start it instead"); err != nil {
				return err
			}
			prog := newProgress(a.stdout, a.isTerminal(a.stdout), len(names), "restarted")
			defer prog.finish()
			machines := machineCache{c: c}
			for i, name := range names {
				prog.status(i, 0)
				u, err := a.restartOne(ctx, c, name, attempts, prog)
				if err != nil {
					if rest := names[i+1:]; len(rest) > 0 {
						err = fmt.Errorf("%w; stopped the rolling restart before %s", err, listNames(rest))
					}
					return err
				}
				if api.IsGlobal(u) {
					prog.println("Unit %s restarted on every machine it runs on", name)
					continue
				}
				prog.println("Unit %s restarted%s", name, machines.on(ctx, u.MachineID))
			}
			return nil
		}),
	}
	cmd.Flags().IntVar(&attempts, "block-attempts", 0, "Wait for each unit to stop and to start, polling up to N times (every 100ms) for each; 0 waits forever")
	return cmd
}

// restartOne stops a unit (unless it is stopped already) and starts it,
// waiting for each.
func (a *app) restartOne(ctx context.Context, c api.Client, name string, attempts int, prog *progress) (*api.Unit, error) {
	u, err := c.Unit(ctx, name)
	if err != nil {
		return nil, err
	}
	if api.IsGlobal(u) {
		return u, a.restartGlobal(ctx, c, u, attempts)
	}
	if u.DesiredState == string(registry.StateLaunched) {
		if err := c.SetUnitTargetState(ctx, name, string(registry.StateLoaded)); err != nil {
			return nil, err
		}
		if err := a.waitFor(ctx, c, []string{name}, goalStopped, attempts, prog, false); err != nil {
			return nil, err
		}
	}
	if err := c.SetUnitTargetState(ctx, name, string(registry.StateLaunched)); err != nil {
		return nil, err
	}
	if err := a.waitFor(ctx, c, []string{name}, goalLaunched, attempts, prog, false); err != nil {
		return nil, err
	}
	return c.Unit(ctx, name)
}

// restartGlobal restarts a global unit: stopped on every machine first, then
// started, waiting for the states every machine's agent publishes.
func (a *app) restartGlobal(ctx context.Context, c api.Client, u *api.Unit, attempts int) error {
	hash := api.FileFromOptions(u.Options).Hash().String()
	steps := []struct {
		state string
		done  func([]*api.UnitState) bool
		what  string
	}{
		{string(registry.StateLoaded), func(ss []*api.UnitState) bool {
			for _, s := range ss {
				if s.SystemdActiveState == "active" || s.SystemdActiveState == "activating" || s.SystemdActiveState == "deactivating" {
					return false
				}
			}
			return true
		}, "stopped"},
		{string(registry.StateLaunched), func(ss []*api.UnitState) bool {
			if len(ss) == 0 {
				return false
			}
			for _, s := range ss {
				if s.Hash != hash || s.SystemdActiveState != "active" {
					return false
				}
			}
			return true
		}, "active"},
	}
	for _, step := range steps {
		if u.DesiredState != step.state {
			if err := c.SetUnitTargetState(ctx, u.Name, step.state); err != nil {
				return err
			}
			u.DesiredState = step.state
		}
		for attempt := 1; ; attempt++ {
			ss, err := c.UnitStates(ctx, api.StateFilter{UnitNames: []string{u.Name}})
			if err != nil {
				return err
			}
			if step.done(ss) {
				break
			}
			for _, s := range ss {
				if step.state == string(registry.StateLaunched) && s.SystemdActiveState == "failed" {
					return codeErrorf(ExitUnitFailed, "global unit %s failed on machine %s; see 'fleetctl journal %s' there", u.Name, s.MachineID, u.Name)
				}
			}
			if attempts > 0 && attempt >= attempts {
				return codeErrorf(ExitTimeout, "timed out after %d attempts waiting for global unit %s to be %s on every machine", attempts, u.Name, step.what)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("stopped waiting for global unit %s to be %s: %w", u.Name, step.what, ctx.Err())
			case <-time.After(a.pollInterval):
			}
		}
	}
	return nil
}
