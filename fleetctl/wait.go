package fleetctl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
)

// goal is the state a blocking command waits for.
type goal int

const (
	goalLoaded   goal = iota // load: scheduled and loaded on a machine
	goalLaunched             // start: scheduled and active in its machine's systemd
	goalStopped              // stop: scheduled loaded, no longer active in systemd
	goalInactive             // unload: scheduled nowhere
)

// target is the desired state a command sets to reach g.
func (g goal) target() registry.State {
	switch g {
	case goalLaunched:
		return registry.StateLaunched
	case goalInactive:
		return registry.StateInactive
	}
	return registry.StateLoaded
}

// verb names the command in fleet's "Triggered unit x.service start".
func (g goal) verb() string {
	return [...]string{"load", "start", "stop", "unload"}[g]
}

func (g goal) describe() string {
	return [...]string{"loaded", "active", "stopped", "inactive"}[g]
}

// needsSystemd reports whether reaching g is read from published systemd
// states, not only from the schedule.
func (g goal) needsSystemd() bool { return g == goalLaunched || g == goalStopped }

type verdict int

const (
	pending verdict = iota
	reached
	failed
)

// check decides where unit u stands on the way to g. st is the state its
// machine's agent published for it (nil if none).
func (g goal) check(u *api.Unit, st *api.UnitState) verdict {
	placed := u.MachineID != ""
	switch g {
	case goalLoaded:
		if placed && u.CurrentState == string(registry.StateLoaded) {
			return reached
		}
	case goalLaunched:
		if !placed || u.CurrentState != string(registry.StateLaunched) || st == nil {
			return pending
		}
		// A state of another version of the unit (before a replace) says
		// nothing about this one.
		if st.Hash != "" && st.Hash != api.FileFromOptions(u.Options).Hash().String() {
			return pending
		}
		switch st.SystemdActiveState {
		case "active":
			return reached
		case "failed":
			return failed
		}
	case goalStopped:
		if !placed || u.CurrentState != string(registry.StateLoaded) {
			return pending
		}
		if st == nil {
			return reached
		}
		switch st.SystemdActiveState {
		case "active", "activating", "deactivating", "reloading", "refreshing":
			return pending
		}
		return reached
	case goalInactive:
		if !placed && u.CurrentState == string(registry.StateInactive) {
			return reached
		}
	}
	return pending
}

// blockFlags are the flags of commands that wait for a state.
type blockFlags struct {
	noBlock  bool
	attempts int
}

func (b *blockFlags) register(cmd *cobra.Command, what string) {
	cmd.Flags().BoolVar(&b.noBlock, "no-block", false, fmt.Sprintf("Do not wait until the units are %s before exiting", what))
	cmd.Flags().IntVar(&b.attempts, "block-attempts", 0, fmt.Sprintf("Wait until the units are %s, giving up after N attempts of 100ms; 0 waits forever", what))
}

// transition sets the desired state of the named units for g and, unless
// told not to, waits for them to reach it. known holds what the caller knows
// of each unit already (nil, or nil items, for nothing): those are not read
// again. Global units are never waited for: they have no single machine to
// report from.
func (a *app) transition(ctx context.Context, c api.Client, names []string, known []*api.Unit, g goal, block blockFlags) error {
	units := make([]*api.Unit, len(names))
	err := inOrder(ctx, len(names), false, func(ctx context.Context, i int) error {
		var u *api.Unit
		if known != nil {
			u = known[i]
		}
		if u == nil {
			var err error
			if u, err = c.Unit(ctx, names[i]); err != nil {
				return err
			}
		}
		if u.DesiredState != string(g.target()) {
			if err := c.SetUnitTargetState(ctx, names[i], string(g.target())); err != nil {
				return err
			}
		}
		units[i] = u
		return nil
	}, func(i int) {
		switch {
		case api.IsGlobal(units[i]):
			fmt.Fprintf(a.stdout, "Triggered global unit %s %s\n", names[i], g.verb())
		case block.noBlock:
			fmt.Fprintf(a.stdout, "Triggered unit %s %s\n", names[i], g.verb())
		}
	})
	if err != nil || block.noBlock {
		return err
	}
	var wait []string
	for i, u := range units {
		if !api.IsGlobal(u) {
			wait = append(wait, names[i])
		}
	}
	if len(wait) == 0 {
		return nil
	}
	prog := newProgress(a.stdout, a.isTerminal(a.stdout), len(wait), g.describe())
	defer prog.finish()
	return a.waitFor(ctx, c, wait, g, block.attempts, prog, true)
}

// fewUnits is how many units a read takes one by one; for more it reads
// the whole collections.
const fewUnits = 10

// resyncTicks is how many poll intervals a wait goes without reading all
// its units before it reads them anyway: a placement changing state on the same
// machine has no event of its own.
const resyncTicks = 20

// waitFor waits until every named unit reaches g (or fails to), printing a
// line for each as it does, in fleet's words, and on a terminal a live
// count. It follows fleet's event stream and reads only the units events
// were about: a few as soon as an event names them, many at most once per
// pollInterval; without the stream (an older fleetd, or while it
// reconnects) it reads them all every interval. A unit the engine keeps
// reporting unplaceable for unplacedGrace is given up on, with the engine's
// reason. It gives up after attempts intervals (0: never) and when ctx
// ends.
//
// Lines go through prog; a unit reaching g gets one, and the live count is
// kept, only if showReached (otherwise the caller keeps the count).
func (a *app) waitFor(ctx context.Context, c api.Client, names []string, g goal, attempts int, prog *progress, showReached bool) error {
	wctx, cancel := context.WithCancel(ctx)
	w := watchUnits(wctx, c, names)
	defer func() { cancel(); w.wait() }()
	// Subscribed first, listed then: a change between the two is in both.
	w.ready(ctx, 10*a.pollInterval)

	machines := machineCache{c: c}
	pendingNames := names
	var failedNames, unplaceable []string
	var reasons []error
	unplacedSince := map[string]time.Time{}
	units := map[string]*api.Unit{}
	states := map[string][]*api.UnitState{} // by unit name
	var deadline time.Time
	if attempts > 0 {
		deadline = time.Now().Add(time.Duration(attempts) * a.pollInterval)
	}
	read, lastFull, lastRead := w.take(pendingNames, true), time.Now(), time.Time{}
	for {
		if len(read) > 0 {
			lastRead = time.Now()
			us, ss, err := a.poll(ctx, c, read, g)
			if err != nil {
				return err
			}
			for _, name := range read {
				delete(units, name)
				delete(states, name)
			}
			for _, u := range us {
				units[u.Name] = u
			}
			for _, s := range ss {
				states[s.Name] = append(states[s.Name], s)
			}
		}
		var still []string
		for _, name := range pendingNames {
			u := units[name]
			if u == nil {
				return notFoundf("unit %s not found: it was destroyed while fleetctl waited for it", name)
			}
			switch g.check(u, stateOn(states[name], u.MachineID)) {
			case reached:
				if showReached {
					prog.println("Unit %s %s%s", name, u.CurrentState, machines.on(ctx, u.MachineID))
				}
				continue
			case failed:
				prog.println("Unit %s failed%s", name, machines.on(ctx, u.MachineID))
				failedNames = append(failedNames, name)
				continue
			}
			if u.UnplacedReason != "" && u.MachineID == "" {
				since, ok := unplacedSince[name]
				if !ok {
					unplacedSince[name] = time.Now()
				} else if time.Since(since) >= a.unplacedGrace {
					prog.println("Unit %s cannot be placed: %s", name, u.UnplacedReason)
					unplaceable = append(unplaceable, name)
					reasons = append(reasons, fmt.Errorf("%s (%s)", name, u.UnplacedReason))
					continue
				}
			} else {
				delete(unplacedSince, name)
			}
			still = append(still, name)
		}
		pendingNames = still
		if showReached {
			prog.status(len(names)-len(pendingNames), len(failedNames)+len(unplaceable))
		}
		if len(pendingNames) == 0 {
			break
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return errors.Join(a.waitErrors(failedNames, unplaceable, reasons),
				codeErrorf(ExitTimeout, "timed out after %d attempts waiting for %s to be %s; check 'fleetctl list-unit-files' and 'fleetctl list-units'",
					attempts, listNames(pendingNames), g.describe()))
		}
		if err := a.nextCheck(ctx, w, len(pendingNames), lastRead, deadline); err != nil {
			return fmt.Errorf("stopped waiting for %s to be %s: %w", listNames(pendingNames), g.describe(), err)
		}
		// Units still waiting on the grace of the unplaced are re-read
		// each interval: their reason may come with no event.
		all := time.Since(lastFull) >= resyncTicks*a.pollInterval || len(unplacedSince) > 0
		if all {
			lastFull = time.Now()
		}
		read = w.take(pendingNames, all)
	}
	return a.waitErrors(failedNames, unplaceable, reasons)
}

// nextCheck blocks until a wait for pending units checks again: after
// pollInterval, or sooner when an event names one of them. Reads of many
// units (whole collections) stay at most one per pollInterval since
// lastRead; a few are read at once. It returns early at the deadline (if
// not zero), and with ctx's error when ctx ends.
func (a *app) nextCheck(ctx context.Context, w *unitWatch, pending int, lastRead, deadline time.Time) error {
	wait := func(d time.Duration) error {
		if !deadline.IsZero() {
			d = min(d, time.Until(deadline))
		}
		t := time.NewTimer(max(d, 0))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	t := time.NewTimer(a.pollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	case <-w.wake:
		if pending > fewUnits {
			return wait(a.pollInterval - time.Since(lastRead))
		}
		return nil
	}
}

// stateOn returns the state of ss published by machine id (nil if none).
func stateOn(ss []*api.UnitState, id string) *api.UnitState {
	for _, s := range ss {
		if s.MachineID == id {
			return s
		}
	}
	return nil
}

// waitErrors is the error of a wait in which units failed or could not be
// placed (nil for none).
func (a *app) waitErrors(failedNames, unplaceable []string, reasons []error) error {
	var errs []error
	if len(unplaceable) > 0 {
		errs = append(errs, codeErrorf(ExitUnplaceable, "no machine can run %s; check the [X-Fleet] options against 'fleetctl list-machines'",
			joinReasons(reasons)))
	}
	if len(failedNames) > 0 {
		errs = append(errs, codeErrorf(ExitUnitFailed, "%s failed to start; see 'fleetctl status %s' and 'fleetctl journal %s'",
			listNames(failedNames), failedNames[0], failedNames[0]))
	}
	return errors.Join(errs...)
}

// poll reads the named units (those not found are left out) and, when g
// needs them, their states: one request per unit for a few, the whole
// collections for many.
func (a *app) poll(ctx context.Context, c api.Client, names []string, g goal) ([]*api.Unit, []*api.UnitState, error) {
	var units []*api.Unit
	if len(names) <= fewUnits {
		got := make([]*api.Unit, len(names))
		err := inOrder(ctx, len(names), false, func(ctx context.Context, i int) error {
			u, err := c.Unit(ctx, names[i])
			if errors.Is(err, api.ErrNotFound) {
				return nil
			}
			got[i] = u
			return err
		}, func(int) {})
		if err != nil {
			return nil, nil, err
		}
		for _, u := range got {
			if u != nil {
				units = append(units, u)
			}
		}
	} else {
		all, err := c.Units(ctx)
		if err != nil {
			return nil, nil, err
		}
		want := make(map[string]bool, len(names))
		for _, n := range names {
			want[n] = true
		}
		for _, u := range all {
			if want[u.Name] {
				units = append(units, u)
			}
		}
	}
	if !g.needsSystemd() {
		return units, nil, nil
	}
	var f api.StateFilter
	if len(names) <= fewUnits {
		f.UnitNames = names
	}
	ss, err := c.UnitStates(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	if len(names) > fewUnits {
		want := make(map[string]bool, len(names))
		for _, n := range names {
			want[n] = true
		}
		ss = slices.DeleteFunc(ss, func(s *api.UnitState) bool { return !want[s.Name] })
	}
	return units, ss, nil
}

// joinReasons lists "unit (why)" items in one phrase.
func joinReasons(reasons []error) string {
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = r.Error()
	}
	if len(parts) == 1 {
		return "unit " + parts[0]
	}
	return "units " + strings.Join(parts, ", ")
}

func listNames(names []string) string {
	if len(names) == 1 {
		return "unit " + names[0]
	}
	return "units " + strings.Join(names, ", ")
}

// machineCache reads the machine list once per command, to name machines
// by ID and IP.
type machineCache struct {
	c        api.Client
	machines map[string]api.Machine
}

// on returns " on <machine legend>", or "" for no machine.
func (m *machineCache) on(ctx context.Context, id string) string {
	if id == "" {
		return ""
	}
	if m.machines == nil {
		m.machines = map[string]api.Machine{}
		// Best effort: without the list the legend lacks the IP.
		if ms, err := m.c.Machines(ctx); err == nil {
			m.machines = machineMap(ms)
		}
	}
	return " on " + machineLegend(id, m.machines, false)
}

func machineMap(ms []api.Machine) map[string]api.Machine {
	out := make(map[string]api.Machine, len(ms))
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

// machineLegend names a machine as fleetctl does: "113f16a7.../10.0.0.3",
// or the full ID with full.
func machineLegend(id string, machines map[string]api.Machine, full bool) string {
	legend := id
	if !full {
		legend = machine.ShortID(id) + "..."
	}
	if m, ok := machines[id]; ok && m.PrimaryIP != "" {
		legend += "/" + m.PrimaryIP
	}
	return legend
}
