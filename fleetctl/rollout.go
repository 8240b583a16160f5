package fleetctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/seed-a1ce88ea/fleet/api"
	"github.com/seed-a1ce88ea/fleet/machine"
	"github.com/seed-a1ce88ea/fleet/registry"
	"github.com/seed-a1ce88ea/fleet/unit"
)

// rolloutPoll is how often a waiting rollout command reads the rollout.
const rolloutPoll = 500 * time.Millisecond

func rolloutsOf(c api.Client) (api.Rollouts, error) {
	rc, ok := c.(api.Rollouts)
	if !ok {
		return nil, fmt.Errorf("this connection to fleet cannot run rolling updates")
	}
	return rc, nil
}

func (a *app) updateCommand() *cobra.Command {
	var (
		file   string
		wait   bool
		output = choice{value: "text", allowed: []string{"text", outputJSON}}
	)
	cmd := &cobra.Command{
		Use:   "update UNIT|'TEMPLATE@*'|GLOBAL_UNIT --file NEW.service [--wait]",
		Short: "Replace the body of running units copy by copy (a rolling update run by fleetd)",
		Long: `Replace the unit file of a unit, of every instance matching a pattern
('web@*') or of a global unit, one copy at a time. The engine leader runs the
rollout, so it goes on when fleetctl exits and when the leader fails over.

The new file's [X-Fleet] options say how:
  UpdateMaxUnavailable=N   copies replaced at once (default 1)
  UpdateMinHealthy=10s     how long a new copy must stay active (default 10s)
  HealthCheck=CMD|URL      run on the copy's machine: a command that must exit 0,
                           or an http:// URL that must answer 2xx
  UpdateAutoRevert=true    put the old file back everywhere if a copy fails

Follow it with 'fleetctl rollout status UNIT' and 'fleetctl events --type rollout';
pause, resume or undo it with 'fleetctl rollout'.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			if file == "" {
				return usageErrorf("update: --file NEW.service is required")
			}
			f, err := readUnitFile(file)
			if err != nil {
				return err
			}
			if f == nil {
				return usageErrorf("update: no unit file %s", file)
			}
			rc, err := rolloutsOf(c)
			if err != nil {
				return err
			}
			st, err := rc.StartRollout(ctx, api.RolloutRequest{Target: args[0], Options: api.OptionsFromFile(f)})
			if err != nil {
				return err
			}
			if !wait {
				return a.printRollout(st, output.value)
			}
			if output.value != outputJSON {
				fmt.Fprintf(a.stdout, "rollout %s started: %d copies, %d at a time\n", st.ID, st.Total, st.MaxUnavailable)
			}
			return a.waitRollout(ctx, rc, st, output.value)
		}),
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the new unit file")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the rollout until it ends; exit non-zero if it is reverted or fails")
	cmd.Flags().VarP(&output, "output", "o", "Output format: text, or json")
	return cmd
}

func (a *app) rolloutCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "rollout status|pause|resume|undo UNIT",
		Short: "Show or steer a rolling update (fleetctl update)",
		Long: `Show or steer a rolling update. UNIT is what was given to fleetctl update
('web@*') or any unit in the rollout.

  status   the rollout's phase and each copy's step (--wait follows it)
  pause    replace no further copies; those in flight finish
  resume   go on (after a pause, or after a copy failed without UpdateAutoRevert)
  undo     put the old file back on every replaced copy, copy by copy; for a
           rollout that is done, start a rollout back to the old file`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var (
		wait   bool
		output = choice{value: "text", allowed: []string{"text", outputJSON}}
	)
	status := &cobra.Command{
		Use:   "status [UNIT] [-o json] [--wait]",
		Short: "Show a rollout (without UNIT: every rollout)",
		Args:  usageArgs(cobra.MaximumNArgs(1)),
		RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
			rc, err := rolloutsOf(c)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				all, err := rc.Rollouts(ctx)
				if err != nil {
					return err
				}
				return a.printRollouts(all, output.value)
			}
			st, err := rc.Rollout(ctx, args[0])
			if err != nil {
				return err
			}
			if wait {
				return a.waitRollout(ctx, rc, st, output.value)
			}
			return a.printRollout(st, output.value)
		}),
	}
	status.Flags().BoolVar(&wait, "wait", false, "follow the rollout until it ends; exit non-zero if it is reverted or fails")
	status.Flags().VarP(&output, "output", "o", "Output format: text, or json")
	root.AddCommand(status)
	for _, action := range []struct{ name, short string }{
		{api.RolloutPause, "Replace no further copies"},
		{api.RolloutResume, "Go on with a paused or failed rollout"},
		{api.RolloutUndo, "Put the old unit file back on every replaced copy"},
	} {
		var out = choice{value: "text", allowed: []string{"text", outputJSON}}
		c := &cobra.Command{
			Use:   action.name + " UNIT",
			Short: action.short,
			Args:  usageArgs(cobra.ExactArgs(1)),
			RunE: a.run(func(ctx context.Context, c api.Client, args []string) error {
				rc, err := rolloutsOf(c)
				if err != nil {
					return err
				}
				st, err := rc.ControlRollout(ctx, args[0], action.name)
				if err != nil {
					return err
				}
				return a.printRollout(st, out.value)
			}),
		}
		c.Flags().VarP(&out, "output", "o", "Output format: text, or json")
		root.AddCommand(c)
	}
	return root
}

// waitRollout follows a rollout until it ends, printing each step as it
// moves and, on a terminal, a live line with the count. It fails when the
// rollout is reverted or stops on a failed copy.
func (a *app) waitRollout(ctx context.Context, rc api.Rollouts, st *api.RolloutStatus, output string) error {
	live := output != outputJSON && a.isTerminal(a.stdout)
	seen := map[string]string{}
	for _, s := range st.Steps {
		seen[s.Unit+"\x00"+s.MachineID] = s.State
	}
	phase := st.Phase
	shown := false
	for {
		if output != outputJSON {
			for _, s := range st.Steps {
				k := s.Unit + "\x00" + s.MachineID
				if seen[k] == s.State {
					continue
				}
				seen[k] = s.State
				if shown {
					fmt.Fprint(a.stdout, clearLine)
					shown = false
				}
				fmt.Fprintf(a.stdout, "%s %s\n", time.Now().Format(time.TimeOnly), stepLine(s))
			}
			if st.Phase != phase {
				phase = st.Phase
				if shown {
					fmt.Fprint(a.stdout, clearLine)
					shown = false
				}
				fmt.Fprintf(a.stdout, "%s rollout %s: %s%s\n", time.Now().Format(time.TimeOnly), st.ID, st.Phase, suffix(st.Message))
			}
			if live {
				fmt.Fprintf(a.stdout, "%s%s", clearLine, progressLine(st))
				shown = true
			}
		}
		if ended(st) {
			break
		}
		select {
		case <-ctx.Done():
			if shown {
				fmt.Fprint(a.stdout, clearLine)
			}
			return ctx.Err()
		case <-time.After(rolloutPoll):
		}
		next, err := rc.Rollout(ctx, st.ID)
		if err != nil {
			return err
		}
		st = next
	}
	if shown {
		fmt.Fprint(a.stdout, clearLine)
	}
	if err := a.printRollout(st, output); err != nil {
		return err
	}
	if st.Phase != registry.RolloutDone {
		return fmt.Errorf("rollout %s %s: %s", st.ID, st.Phase, st.Message)
	}
	return nil
}

func ended(st *api.RolloutStatus) bool {
	return st.Phase == registry.RolloutDone || st.Phase == registry.RolloutReverted || st.Phase == registry.RolloutFailed
}

func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return " (" + msg + ")"
}

func stepLine(s api.RolloutStep) string {
	what := s.Unit
	if s.MachineID != "" {
		what += " on " + machine.ShortID(s.MachineID)
	}
	return fmt.Sprintf("%s: %s%s", what, s.State, suffix(s.Reason))
}

// progressLine is the live count of a rollout.
func progressLine(st *api.RolloutStatus) string {
	var inFlight []string
	for _, s := range st.Steps {
		if s.State == registry.StepUpdating || s.State == registry.StepReverting {
			inFlight = append(inFlight, stepLine(s))
		}
	}
	line := fmt.Sprintf("%s: %d/%d copies healthy", st.Phase, st.Healthy, st.Total)
	if st.Paused {
		line += ", paused"
	}
	if len(inFlight) > 0 {
		line += "; " + strings.Join(inFlight, ", ")
	}
	return line
}

func (a *app) printRollout(st *api.RolloutStatus, output string) error {
	if output == outputJSON {
		return writeJSON(a.stdout, st)
	}
	w := a.stdout
	fmt.Fprintf(w, "Rollout %s: %s%s, %d/%d copies healthy", st.ID, st.Phase, map[bool]string{true: " (paused)"}[st.Paused], st.Healthy, st.Total)
	if a.isTerminal(w) && st.Total > 0 {
		width := min(st.Total, 40)
		done := st.Healthy * width / st.Total
		fmt.Fprintf(w, " [%s%s]", strings.Repeat("#", done), strings.Repeat("-", width-done))
	}
	fmt.Fprintln(w)
	if st.Message != "" {
		fmt.Fprintf(w, "  %s\n", st.Message)
	}
	policy := fmt.Sprintf("  %d at a time, each active for %s", st.MaxUnavailable, st.MinHealthy)
	if st.HealthCheck != "" {
		policy += ", health check " + st.HealthCheck
	}
	if st.AutoRevert {
		policy += ", auto-revert"
	}
	fmt.Fprintf(w, "%s; to %s", policy, hash12(st.To))
	if st.Identity != "" {
		fmt.Fprintf(w, ", by %s", st.Identity)
	}
	fmt.Fprintf(w, ", started %s\n", st.Started.Local().Format(time.DateTime))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tMACHINE\tSTEP\tSINCE\tREASON")
	for _, s := range st.Steps {
		m, since := "-", "-"
		if s.MachineID != "" {
			m = machine.ShortID(s.MachineID) + "..."
		}
		if !s.Since.IsZero() {
			since = s.Since.Local().Format(time.TimeOnly)
		}
		reason := s.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Unit, m, s.State, since, reason)
	}
	return tw.Flush()
}

func (a *app) printRollouts(all []*api.RolloutStatus, output string) error {
	if output == outputJSON {
		if all == nil {
			all = []*api.RolloutStatus{}
		}
		return writeJSON(a.stdout, all)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLLOUT\tPHASE\tHEALTHY\tSTARTED")
	for _, st := range all {
		phase := st.Phase
		if st.Paused {
			phase += " (paused)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", st.ID, phase, st.Healthy, st.Total, st.Started.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func hash12(h string) string { return h[:min(len(h), 12)] }

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// hasUpdatePolicy reports whether a unit file sets any of the rolling
// update options: start --replace then rolls the unit out instead of
// replacing it in one go.
func hasUpdatePolicy(f *unit.File) bool {
	for _, o := range f.Options {
		if o.Section == "X-Fleet" && (strings.HasPrefix(o.Name, "Update") || o.Name == "HealthCheck") {
			return true
		}
	}
	return false
}

// replaceByRollout replaces a launched unit whose new file has an update
// policy through a rollout (fleetctl update), so that start --replace
// honours the policy; ok is false when the plain replace applies.
func (a *app) replaceByRollout(ctx context.Context, c api.Client, existing *api.Unit, local *unit.File) (ok bool, warnings []string, err error) {
	rc, isRC := c.(api.Rollouts)
	if !isRC || existing.DesiredState != string(registry.StateLaunched) || !(hasUpdatePolicy(local) || hasUpdatePolicy(api.FileFromOptions(existing.Options))) {
		return false, nil, nil
	}
	st, err := rc.StartRollout(ctx, api.RolloutRequest{Target: existing.Name, Options: api.OptionsFromFile(local)})
	if err != nil {
		return true, nil, err
	}
	return true, []string{fmt.Sprintf("unit %s: rolling update %s started (fleetctl rollout status %s)", existing.Name, st.ID, existing.Name)}, nil
}
