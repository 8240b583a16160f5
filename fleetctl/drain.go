package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// drainPoll is how often a blocking drain or mv reads the cluster again
// (the machines, and the states of the drained machines' units only).
const drainPoll = 250 * time.Millisecond

// moveWait bounds how long a blocking mv waits for the unit to be active on
// its new machine.
const moveWait = 5 * time.Minute

func drainerOf(c api.Client) (api.Drainer, error) {
	d, ok := c.(api.Drainer)
	if !ok {
		return nil, errors.New("this client cannot drain machines or move units")
	}
	return d, nil
}

func (a *app) drainCommand() *cobra.Command {
	var (
		deadline             time.Duration
		includeGlobal, force bool
		noBlock              bool
	)
	cmd := &cobra.Command{
		Use:   "drain MACHINE... [--deadline D] [--include-global] [--no-block] [--force]",
		Short: "Move every unit off machines, so they can be taken down",
		Long: `Drain machines: they take no new units, and each unit on them is started on
another machine and seen active there before its copy here is stopped
(make-before-break). Units that run at most once (AtMostOnce) or whose
Conflicts match their own name are stopped here first (break-before-make).
Units pinned to the machine (MachineID) and global units stay and are listed;
--include-global stops global units too once nothing else is left. After
--deadline, what has not moved is stopped.

Draining the last machine that can run a unit is refused, with the plan of
what would run nowhere and why, unless --force. The command blocks, showing
progress, until the machines are drained (their state in
'fleetctl list-machines --fields=machine,state' reads drained); --no-block
returns once the drain is recorded. The engine leader carries the drain out:
it goes on if this command is interrupted. Machine IDs may be given by a
unique prefix.`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: a.completeMachines,
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			if deadline < 0 {
				return usageErrorf("--deadline must not be negative")
			}
			dr, err := drainerOf(c)
			if err != nil {
				return err
			}
			ids, err := resolveMachines(ctx, c, args)
			if err != nil {
				return err
			}
			req := api.DrainRequest{IncludeGlobal: includeGlobal, Force: force}
			if deadline > 0 {
				req.Deadline = deadline.String()
			}
			var started []*api.DrainPlan
			var errs []error
			for _, id := range ids {
				plan, err := dr.DrainMachine(ctx, id, req)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if plan.MachineID == "" {
					plan.MachineID = id
				}
				started = append(started, plan)
				a.printDrainPlan(plan)
			}
			if !noBlock && len(started) > 0 {
				if err := a.waitDrained(ctx, c, started); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		}),
	}
	cmd.Flags().DurationVar(&deadline, "deadline", 0, "stop what has not moved after this long (for example 10m); default: never")
	cmd.Flags().BoolVar(&includeGlobal, "include-global", false, "stop global units on the machines too, once nothing else is left")
	cmd.Flags().BoolVar(&force, "force", false, "drain even when units would then run on no machine")
	cmd.Flags().BoolVar(&noBlock, "no-block", false, "return once the drain is recorded, without waiting for it")
	return cmd
}

func (a *app) printDrainPlan(p *api.DrainPlan) {
	fmt.Fprintf(a.stdout, "Draining %s: %d unit(s) to move", p.MachineID, len(p.Move))
	if len(p.Move) > 0 {
		fmt.Fprintf(a.stdout, " (%s)", strings.Join(p.Move, ", "))
	}
	fmt.Fprintln(a.stdout)
	if len(p.Stop) > 0 {
		fmt.Fprintf(a.stdout, "  stopping global units: %s\n", strings.Join(p.Stop, ", "))
	}
	for _, n := range sortedKeys(p.Stay) {
		fmt.Fprintf(a.stdout, "  stays: %s: %s\n", n, p.Stay[n])
	}
	for _, n := range sortedKeys(p.Unplaced) {
		fmt.Fprintf(a.stdout, "  will run nowhere: %s: %s\n", n, p.Unplaced[n])
	}
}

// agentGrace bounds how long a blocking drain waits, once the engine marked
// a machine drained, for its agent to report the moved units stopped.
const agentGrace = 10 * time.Second

// waitDrained prints, per machine, the units its agent still reports
// whenever they change, until every machine reads drained (or left) and its
// agent reports only the units its plan keeps there.
func (a *app) waitDrained(ctx context.Context, c api.Client, plans []*api.DrainPlan) error {
	start := time.Now()
	left := map[string]string{}            // machine -> units last printed
	drainedAt := map[string]time.Time{}    // machine -> when first seen drained
	pending := map[string]*api.DrainPlan{} // by machine
	for _, p := range plans {
		pending[p.MachineID] = p
	}
	for len(pending) > 0 {
		ms, err := c.Machines(ctx)
		if err != nil {
			return err
		}
		ids := sortedKeys(pending)
		states, err := c.UnitStates(ctx, api.StateFilter{MachineIDs: ids})
		if err != nil {
			return err
		}
		state := map[string]string{}
		for _, m := range ms {
			state[m.ID] = m.State
		}
		for _, id := range ids {
			plan := pending[id]
			var on, moving []string // what its agent still reports; of those, what does not stay
			for _, s := range states {
				if s.MachineID != id {
					continue
				}
				on = append(on, s.Name)
				if _, stays := plan.Stay[s.Name]; !stays {
					if _, nowhere := plan.Unplaced[s.Name]; !nowhere {
						moving = append(moving, s.Name)
					}
				}
			}
			took := time.Since(start).Round(100 * time.Millisecond)
			switch st := state[id]; {
			case st == "":
				fmt.Fprintf(a.stdout, "Machine %s left the cluster after %s\n", machine.ShortID(id), took)
				delete(pending, id)
				continue
			case st != registry.MachineDraining:
				if drainedAt[id].IsZero() {
					drainedAt[id] = time.Now()
				}
				if len(moving) == 0 || time.Since(drainedAt[id]) > agentGrace {
					fmt.Fprintf(a.stdout, "Machine %s %s in %s", machine.ShortID(id), st, took)
					if len(on) > 0 {
						fmt.Fprintf(a.stdout, "; still there: %s", strings.Join(on, ", "))
					}
					fmt.Fprintln(a.stdout)
					delete(pending, id)
					continue
				}
			}
			text := strings.Join(on, ", ")
			if prev, seen := left[id]; !seen || prev != text {
				fmt.Fprintf(a.stdout, "%s: %d unit(s) left %s\n", machine.ShortID(id), len(on), text)
				left[id] = text
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(drainPoll):
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// resolveMachines turns machine ID prefixes into present machines' IDs.
func resolveMachines(ctx context.Context, c api.Client, args []string) ([]string, error) {
	ids := make([]string, 0, len(args))
	for _, arg := range args {
		m, err := findMachine(ctx, c, arg)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(ids, m.ID) {
			ids = append(ids, m.ID)
		}
	}
	return ids, nil
}

func (a *app) undrainCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "undrain MACHINE...",
		Short: "Let drained machines take units again",
		Long: `End the drain of machines: they take new units again. Units moved away stay
where they are now. A machine that is not present (rebooting) is named by its
full ID.`,
		Args:              usageArgs(cobra.MinimumNArgs(1)),
		ValidArgsFunction: a.completeMachines,
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			dr, err := drainerOf(c)
			if err != nil {
				return err
			}
			var errs []error
			for _, arg := range args {
				id := arg
				if m, err := findMachine(ctx, c, arg); err == nil {
					id = m.ID
				} else if IsUsage(err) {
					return err
				}
				if err := dr.UndrainMachine(ctx, id); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(a.stdout, "Undrained %s\n", id)
			}
			return errors.Join(errs...)
		}),
	}
}

func (a *app) mvCommand() *cobra.Command {
	var noBlock bool
	cmd := &cobra.Command{
		Use:   "mv UNIT MACHINE [--no-block]",
		Short: "Move a unit to another machine",
		Long: `Move a unit to the given machine: it is started there and seen active before
its old copy is stopped (make-before-break), unless it runs at most once
(AtMostOnce) or its Conflicts match its own name, which stop the old copy
first. A machine that may not take the unit (its MachineID, metadata,
Conflicts, a drain) is refused and nothing changes. The command waits until
the unit is active on the machine, unless --no-block.`,
		Args:              usageArgs(cobra.ExactArgs(2)),
		ValidArgsFunction: a.completeMachinesAndUnits,
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			dr, err := drainerOf(c)
			if err != nil {
				return err
			}
			names, err := unitNames(args[:1])
			if err != nil {
				return err
			}
			m, err := findMachine(ctx, c, args[1])
			if err != nil {
				return err
			}
			start := time.Now()
			if err := dr.MoveUnit(ctx, names[0], m.ID); err != nil {
				return err
			}
			if noBlock {
				fmt.Fprintf(a.stdout, "Moving %s to %s\n", names[0], m.ID)
				return nil
			}
			return a.waitMoved(ctx, c, names[0], m.ID, start)
		}),
	}
	cmd.Flags().BoolVar(&noBlock, "no-block", false, "return once the move is recorded")
	return cmd
}

// waitMoved waits until unit name runs only on machine id, active.
func (a *app) waitMoved(ctx context.Context, c api.Client, name, id string, start time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, moveWait)
	defer cancel()
	for {
		ss, err := c.UnitStates(ctx, api.StateFilter{UnitNames: []string{name}})
		if err == nil && len(ss) == 1 && ss[0].MachineID == id && ss[0].SystemdActiveState == "active" {
			u, err := c.Unit(ctx, name)
			if err == nil && u.MachineID == id {
				fmt.Fprintf(a.stdout, "Moved %s to %s in %s\n", name, id, time.Since(start).Round(100*time.Millisecond))
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return codeErrorf(ExitTimeout, "%s is not active on %s after %s; see 'fleetctl status %s'", name, id, moveWait, name)
			}
			return ctx.Err()
		case <-time.After(drainPoll):
		}
	}
}
